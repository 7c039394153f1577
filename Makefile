# holepunch: `make demo` runs everything locally; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
APT_PACKAGES := coturn iptables iproute2 conntrack shellcheck redis-server curl chromium
DEMO_ARGS ?=
BENCH_DATA_ARGS ?=

.PHONY: demo test fuzz bench bench-cluster soak bench-punch bench-data bench-ui lint system-deps clean

# The runtime distribution with its dev extra, and the dev tools (tools/), which no image installs.
$(VENV)/.installed: pyproject.toml tools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' -e tools
	touch $@

$(CHECKOV_VENV)/.installed:
	# checkov ships bc-python-hcl2, which overwrites python-hcl2: it gets a virtualenv of its own.
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov>=3.2,<4'
	touch $@

# Debian packages the tests use (coturn, iptables, ...): installed only when running as root.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			echo "installing:$$missing"; \
			(apt-get install -y -q --no-install-recommends $$missing || \
			 (apt-get update -q && apt-get install -y -q --no-install-recommends $$missing)) >/dev/null; \
		fi; \
	else echo "not root: skipping apt packages ($(APT_PACKAGES)); tests needing them will skip"; fi

demo: $(VENV)/.installed
	$(PY) -m holepunch_devtools.demo $(DEMO_ARGS)

# Every test, on every core: tests/conftest.py names the groups that must share a worker (the
# NAT labs' namespaces, the one checkov report). The two virtualenvs and the apt packages are
# set up side by side first. Timing and method: docs/testing.md.
test:
	$(MAKE) --no-print-directory -j3 $(VENV)/.installed $(CHECKOV_VENV)/.installed system-deps
	$(PY) -m pytest -q -n auto --dist loadgroup

# The fuzz tests with the long profile (tests/fuzz/profiles.py; `make test` runs the fast one).
fuzz: $(VENV)/.installed
	HOLEPUNCH_FUZZ_PROFILE=long $(PY) -m pytest -q tests/fuzz

bench: $(VENV)/.installed
	$(PY) -m holepunch_devtools.bench

# 5,000 workers over two rendezvous instances sharing a redis-server: docs/redis.md
bench-cluster: $(VENV)/.installed system-deps
	$(PY) -m holepunch_devtools.cluster_bench

# 10 minutes of churn over two instances sharing Redis, one killed halfway, then checked
soak: $(VENV)/.installed system-deps
	$(PY) -m holepunch_devtools.soak

# Hole punching in the NAT lab (needs root and network namespaces): docs/punching-lab.md
bench-punch: $(VENV)/.installed system-deps
	$(PY) -m holepunch_devtools.punch_bench --count 50

# The data plane in the NAT lab (needs root): sizes via BENCH_DATA_ARGS (--quick, --direct-mb...);
# docs/dataplane-bench.md
bench-data: $(VENV)/.installed system-deps
	$(PY) -m holepunch_devtools.data_bench $(BENCH_DATA_ARGS)

# The fleet page with 5,000 workers in Debian's headless chromium: paint, filter, a viewer's
# server cost (README, "Fleet page")
bench-ui: $(VENV)/.installed system-deps
	$(PY) -m holepunch_devtools.ui_bench

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples  # not a package: checked as files

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
