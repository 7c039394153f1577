"""Suite-wide set-up: the fuzz profile, and which tests must share one pytest-xdist worker.

`make test` runs `pytest -n auto --dist loadgroup`: tests are spread over one worker per
core, except those given the same `xdist_group` here, which run one after another on one
worker:

- `netns`: every test marked `root` (the NAT labs: network namespaces, iptables rules and
  conntrack entries are machine-wide, and the punching labs are shared per module);
- `checkov`: the tests reading the one checkov report, which takes a minute to produce and
  would otherwise be produced once per worker.

Everything else binds only loopback ports, chosen by tests/support/ports.py so that
workers cannot pick the same one.
"""

from __future__ import annotations

import pytest

from tests.fuzz.profiles import load_selected_profile

FUZZ_PROFILE = load_selected_profile()

NETNS_GROUP = "netns"
CHECKOV_GROUP = "checkov"


def pytest_report_header() -> str:
    return (
        f"fuzz profile: {FUZZ_PROFILE.name} ({FUZZ_PROFILE.examples_per_property} examples "
        f"per property, {FUZZ_PROFILE.atheris_runs} atheris runs)"
    )


def xdist_group_of(item: pytest.Item) -> str | None:
    if item.get_closest_marker("root") is not None:
        return NETNS_GROUP
    if "checkov_report" in getattr(item, "fixturenames", ()):
        return CHECKOV_GROUP
    return None


# Before xdist's own hook, which turns the xdist_group marks into node-id suffixes.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = xdist_group_of(item)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
