"""modules/cloud-run-service: its inputs, evaluated by real Terraform, and how run.tf uses it.

The module's resource needs the google provider, but its variables do not: a scratch
module holding a verbatim copy of its variables.tf evaluates what run.tf passes (the
settings of locals.tf, evaluated first) with the module's own types, defaults and
validations. The resource itself is checked against the provider schema in
test_terraform_schema.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.infra import tfeval
from tests.infra.conftest import TF_DIR, Terraform

MODULE_DIR = TF_DIR / "modules" / "cloud-run-service"
GOOD = {"project_id": "demo-project-1"}
SECRET = {"secret": "holepunch-rendezvous-token", "version": "latest"}
TOKEN_MODE = {
    "auth_mode": "token",
    "rendezvous_public": True,
    "rendezvous_token_secret": {"secret": SECRET["secret"]},
}
VPC = {"egress": "ALL_TRAFFIC", "network": "projects/p/global/networks/n", "subnetwork": "s"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    names = (
        "rendezvous_revision",
        "rendezvous_container",
        "rendezvous_secret_env",
        "worker_revision",
        "worker_container",
        "worker_env",
        "worker_secret_env",
        "worker_pool_container",
        "app_containers",
        "app_service_containers",
    )
    extra = "".join(f'output "{name}" {{ value = local.{name} }}\n' for name in names)
    return tfeval.module(tmp_path_factory.mktemp("settings"), extra)


@pytest.fixture(scope="module")
def module_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's variables.tf alone, echoing what it receives after type conversion."""
    directory = tmp_path_factory.mktemp("module-inputs")
    shutil.copy(MODULE_DIR / "variables.tf", directory / "variables.tf")
    (directory / "outputs.tf").write_text(
        'output "containers" { value = var.containers }\n'
        'output "revision" { value = var.revision }\n'
        'output "vpc_access" { value = var.vpc_access }\n'
        'output "primary_container" { value = var.primary_container }\n',
        encoding="utf-8",
    )
    return directory


def module_values(**inputs: Any) -> dict[str, Any]:
    """The module's required inputs, with INPUTS added."""
    return {"name": "svc", "region": "us-central1", "service_account": "sa@p.iam", **inputs}


def test_rendezvous_settings_are_valid_module_inputs(settings: Path, module_inputs: Path) -> None:
    local = tfeval.outputs(settings, {**GOOD, **TOKEN_MODE})
    container = {
        **local["rendezvous_container"],
        "env_from_secrets": local["rendezvous_secret_env"],
    }
    values = module_values(
        revision=local["rendezvous_revision"], containers={"rendezvous": container}
    )
    out = tfeval.outputs(module_inputs, values)
    assert out["revision"] == local["rendezvous_revision"]
    given = out["containers"]["rendezvous"]
    assert given["env_from_secrets"] == {"RENDEZVOUS_TOKEN": SECRET}
    assert given["startup_probe"]["path"] == given["liveness_probe"]["path"] == "/livez"
    assert given["env"] == local["rendezvous_container"]["env"]
    assert out.get("vpc_access") is None, "terraform output leaves out null outputs"


def test_worker_settings_are_valid_module_inputs(settings: Path, module_inputs: Path) -> None:
    apps = [{"name": "api", "image": "a", "ports": [8000]}]
    local = tfeval.outputs(settings, {**GOOD, **TOKEN_MODE, "app_containers": apps})
    env = {**local["worker_env"], "RENDEZVOUS_SERVICE_URL": "https://rendezvous.example"}
    container = {**local["worker_container"], "env": env}
    container["env_from_secrets"] = local["worker_secret_env"]
    # The sidecar has no port (only the worker is the ingress container) and starts after it.
    containers = {**local["app_service_containers"], "worker": container}
    values = module_values(
        revision=local["worker_revision"],
        containers=containers,
        vpc_access=VPC,
        primary_container="worker",
    )
    out = tfeval.outputs(module_inputs, values)
    assert out["containers"]["api"]["port"] is None
    assert out["containers"]["api"]["depends_on"] == ["worker"]
    given = out["containers"]["worker"]
    assert given["env"]["RENDEZVOUS_SERVICE_URL"] == "https://rendezvous.example"
    assert given["env_from_secrets"] == {"RENDEZVOUS_TOKEN": SECRET}
    assert given["liveness_probe"] is None, "the worker has a startup probe only"
    # Unset revision settings stay null: Cloud Run's defaults, as before the module.
    assert out["revision"] == {
        "min_instance_count": 1,
        "max_instance_count": 2,
        "timeout": None,
        "max_concurrency": None,
        "session_affinity": None,
    }
    assert out["vpc_access"] == VPC


CONTAINER = {
    "image": "i",
    "port": 8080,
    "resources": {"cpu": "1", "memory": "512Mi", "cpu_idle": True},
}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"revision": {"min_instance_count": 3, "max_instance_count": 2}},
            "revision.min_instance_count must not exceed",
        ),
        ({"containers": {}}, "containers must hold at least one container"),
        (
            {
                "containers": {
                    "c": {**CONTAINER, "env": {"A": "1"}, "env_from_secrets": {"A": SECRET}}
                }
            },
            "a variable may be in env or in env_from_secrets, not in both",
        ),
        ({"ingress": "ALL"}, "ingress must be"),
        (
            {"containers": {"c": CONTAINER, "d": {**CONTAINER, "port": 9000}}},
            "exactly one container (the ingress container) must have a port",
        ),
        (
            {"containers": {"c": {**CONTAINER, "depends_on": ["d"]}}},
            "depends_on must name other containers of the service",
        ),
        ({"primary_container": "nope"}, "primary_container must name one of containers"),
        ({"max_instance_count": 0}, "max_instance_count must be a whole number"),
        ({"vpc_access": {**VPC, "egress": "ALL"}}, "vpc_access.egress must be"),
    ],
)
def test_module_refuses_bad_inputs(
    module_inputs: Path, inputs: dict[str, Any], message: str
) -> None:
    values = module_values(
        revision={"min_instance_count": 1, "max_instance_count": 1},
        containers={"c": CONTAINER},
    )
    rc, out = tfeval.plan(module_inputs, {**values, **inputs})
    assert rc != 0, f"{inputs} was accepted"
    assert message in " ".join(out.split()), out


def test_both_services_use_the_module(tf: Terraform) -> None:
    assert tf.resources("google_cloud_run_v2_service") == {}, "services are made by the module"
    assert tf.resources("google_cloud_run_v2_worker_pool") == {}, "the pool is made by its module"
    for name in ("rendezvous", "worker"):
        call = tf.module(name)
        assert call["source"] == "./modules/cloud-run-service"
        assert call["revision"] == f"${{local.{name}_revision}}"
    assert tf.module("rendezvous")["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert tf.module("worker")["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"


def test_moved_blocks_keep_the_existing_services(tf: Terraform, module_tf: Terraform) -> None:
    """Without them, the first apply after the module would destroy and re-create both
    services (new URLs, downtime); with them, Terraform only renames them in the state."""
    (address,) = module_tf.resources("google_cloud_run_v2_service")
    moves = {move["from"]: move["to"] for move in tf.blocks("moved")}
    assert moves == {
        "${google_cloud_run_v2_service.rendezvous}": (
            f"${{module.rendezvous.google_cloud_run_v2_service.{address}}}"
        ),
        # The worker's module call gained a count (worker_host): its instance 0.
        "${google_cloud_run_v2_service.worker}": (
            f"${{module.worker[0].google_cloud_run_v2_service.{address}}}"
        ),
        "${module.worker}": "${module.worker[0]}",
        # The two share alerts became one for_each resource (alerts.tf).
        "${google_monitoring_alert_policy.punch_failures}": (
            '${google_monitoring_alert_policy.punch_share["punch_failures"]}'
        ),
        "${google_monitoring_alert_policy.relay_share}": (
            '${google_monitoring_alert_policy.punch_share["relay_share"]}'
        ),
    }


def test_module_ignores_what_cloud_build_and_gcloud_own(module_tf: Terraform) -> None:
    service = module_tf.resource("google_cloud_run_v2_service", "service")
    (lifecycle,) = service["lifecycle"]
    ignored = {field.strip("${}") for field in lifecycle["ignore_changes"]}
    assert ignored == {
        "client",
        "client_version",
        "template[0].annotations",
        "template[0].labels",
        "template[0].revision",
        "template[0].containers[0].image",
    }


POOL_DIR = TF_DIR / "modules" / "cloud-run-worker-pool"
POOL_CONTAINER = {"image": "i", "resources": {"cpu": "1", "memory": "512Mi"}}
PROBE = {
    "path": "/readyz",
    "port": 8080,
    "period_seconds": 5,
    "timeout_seconds": 3,
    "failure_threshold": 24,
}


@pytest.fixture(scope="module")
def pool_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker pool module's variables.tf alone, echoing what it receives."""
    directory = tmp_path_factory.mktemp("pool-inputs")
    shutil.copy(POOL_DIR / "variables.tf", directory / "variables.tf")
    (directory / "outputs.tf").write_text(
        'output "containers" { value = var.containers }\n', encoding="utf-8"
    )
    return directory


def pool_values(**inputs: Any) -> dict[str, Any]:
    return {
        "name": "pool",
        "region": "us-central1",
        "service_account": "sa@p.iam",
        "instance_count": 2,
        "primary_container": "worker",
        "containers": {"worker": {**POOL_CONTAINER, "startup_probe": PROBE}},
        **inputs,
    }


def test_worker_pool_settings_are_valid_module_inputs(settings: Path, pool_inputs: Path) -> None:
    """What run.tf passes the pool: the worker (locals.tf) and a sidecar that starts after it."""
    local = tfeval.outputs(
        settings,
        {**GOOD, **TOKEN_MODE, "app_containers": [{"name": "api", "image": "a", "ports": [8000]}]},
    )
    worker = {
        **local["worker_pool_container"],
        "env": {**local["worker_env"], "RENDEZVOUS_SERVICE_URL": "https://r.example"},
        "env_from_secrets": local["worker_secret_env"],
    }
    containers = {**local["app_containers"], "worker": worker}
    out = tfeval.outputs(pool_inputs, pool_values(containers=containers))
    given = out["containers"]
    assert given["worker"]["startup_probe"] == {**PROBE}
    assert given["worker"]["env"]["EXPOSE_PORTS"] == "8000"
    assert given["api"]["depends_on"] == ["worker"]
    assert given["api"]["startup_probe"] is None


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"instance_count": -1}, "instance_count must be a whole number from 0 to 1000"),
        ({"instance_count": 1.5}, "instance_count must be a whole number from 0 to 1000"),
        ({"primary_container": "app"}, "primary_container must name one of containers"),
        (
            {"containers": {"worker": {**POOL_CONTAINER, "depends_on": ["app"]}}},
            "depends_on must name other containers of the pool",
        ),
        (
            # The dependency exists but has no startup probe: Cloud Run could never start it.
            {
                "containers": {
                    "worker": POOL_CONTAINER,
                    "app": {**POOL_CONTAINER, "depends_on": ["worker"]},
                }
            },
            "depends_on must name other containers of the pool",
        ),
        ({"vpc_access": {**VPC, "egress": "ALL"}}, "vpc_access.egress must be"),
    ],
)
def test_worker_pool_module_refuses_bad_inputs(
    pool_inputs: Path, inputs: dict[str, Any], message: str
) -> None:
    rc, out = tfeval.plan(pool_inputs, pool_values(**inputs))
    assert rc != 0, f"{inputs} was accepted"
    assert message in " ".join(out.split()), out
