"""infra/terraform, parsed with python-hcl2: literal settings and how resources are wired.

Values computed from variables (locals.tf, variable validation) are asserted where real
Terraform evaluates them: test_terraform_eval.py and test_terraform_module.py. What is
left here is what only exists once resources do: which resource refers to which, and the
few expressions that mix a resource's attributes in (the rendezvous's `vpc_access` and
secret env), which offline Terraform cannot evaluate.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.conftest import TF_DIR, Terraform

FILES = [
    "versions.tf",
    "variables.tf",
    "outputs.tf",
    "apis.tf",
    "network.tf",
    "nat.tf",
    "locals.tf",
    "artifact_registry.tf",
    "iam.tf",
    "run.tf",
    "build.tf",
    "observability.tf",
    "worker_registry_redis.tf",
    "alerts.tf",
    "modules/cloud-run-service/main.tf",
    "modules/cloud-run-service/variables.tf",
    "modules/cloud-run-service/outputs.tf",
    "modules/cloud-run-service/versions.tf",
    "modules/cloud-run-worker-pool/main.tf",
    "modules/cloud-run-worker-pool/variables.tf",
    "modules/cloud-run-worker-pool/outputs.tf",
    "modules/cloud-run-worker-pool/versions.tf",
]
APIS = {
    "run.googleapis.com",
    "compute.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "iam.googleapis.com",
}


def api(name: str) -> str:
    return f'${{google_project_service.apis["{name}.googleapis.com"]}}'


def only(blocks: list[dict]) -> dict:
    assert len(blocks) == 1, blocks
    return blocks[0]


def test_files_split_by_concern_each_opening_with_a_one_line_comment() -> None:
    for name in FILES:
        first = (TF_DIR / name).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# ") and len(first) > 10, (
            f"{name} must open with a one-line comment"
        )
    assert (TF_DIR / "terraform.tfvars.example").exists()
    assert (TF_DIR / "README.md").exists()


def test_provider_range(tf: Terraform) -> None:
    terraform = only(tf.files["versions.tf"]["terraform"])
    # Validations that refer to other variables (auth_mode, rendezvous_public) need 1.9.
    assert terraform["required_version"] == ">= 1.9"
    google = only(terraform["required_providers"])["google"]
    # 7.10: worker-pool probes and container start order, the service-level scaling cap.
    google_range = {"source": "hashicorp/google", "version": ">= 7.10, < 9"}
    assert google == google_range
    assert "gcs" in only(terraform["backend"])
    for module in ("cloud-run-service", "cloud-run-worker-pool"):
        text = (TF_DIR / "modules" / module / "versions.tf").read_text(encoding="utf-8")
        assert 'version = ">= 7.10, < 9"' in text, f"{module} has another provider range"


def test_apis_enabled_and_kept_on_destroy(tf: Terraform) -> None:
    service = tf.resource("google_project_service", "apis")
    assert service["for_each"] == "${local.apis}"
    assert service["disable_on_destroy"] is False


@pytest.mark.parametrize(
    ("rtype", "name", "needs"),
    [
        ("google_compute_network", "vpc", "compute"),
        ("google_compute_address", "nat", "compute"),
        ("google_artifact_registry_repository", "images", "artifactregistry"),
        ("google_service_account", "rendezvous", "iam"),
        ("google_service_account", "worker", "iam"),
        ("google_service_account", "build", "iam"),
        ("google_logging_metric", "events", "logging"),
        ("google_monitoring_dashboard", "holepunch", "monitoring"),
        ("google_storage_bucket", "build_source", "storage"),
        ("google_cloudbuild_trigger", "push", "cloudbuild"),
        ("google_secret_manager_secret_iam_member", "runtime_accessor", "secretmanager"),
        ("google_redis_instance", "registry", "redis"),
        ("google_monitoring_alert_policy", "rendezvous_unavailable", "monitoring"),
        ("google_monitoring_alert_policy", "workers_below_expected", "monitoring"),
        ("google_monitoring_alert_policy", "punch_share", "monitoring"),
        ("google_monitoring_alert_policy", "nat_failures", "monitoring"),
        ("google_monitoring_alert_policy", "worker_restarts", "monitoring"),
        ("google_secret_manager_secret", "registry_url", "secretmanager"),
    ],
)
def test_resources_depend_on_their_api(tf: Terraform, rtype: str, name: str, needs: str) -> None:
    assert api(needs) in tf.resource(rtype, name).get("depends_on", [])


@pytest.mark.parametrize("name", ["rendezvous", "worker", "worker_pool"])
def test_services_depend_on_the_run_api_and_their_secret_grants(tf: Terraform, name: str) -> None:
    """A revision whose env reads a secret fails to deploy until its account may read it."""
    depends_on = tf.module(name)["depends_on"]
    assert api("run") in depends_on
    assert "${google_secret_manager_secret_iam_member.runtime_accessor}" in depends_on


def test_every_google_resource_is_covered_by_an_api_dependency(tf: Terraform) -> None:
    """A resource with no dependency on its API must reference one that has it."""
    for content in tf.files.values():
        for block in content.get("resource", []):
            for rtype, resources in block.items():
                if rtype == "google_project_service":
                    continue
                for name, body in resources.items():
                    text = json.dumps(body)
                    # A module call (the Cloud Run services) depends on the API itself.
                    refers = re.search(
                        r"google_(?!project_service)[a-z0-9_]+\.[a-z_]+|module\.[a-z_]+", text
                    )
                    assert "google_project_service.apis" in text or refers or "local." in text, (
                        f"{rtype}.{name} neither depends on its API nor references a resource that does"
                    )


def test_network_has_custom_subnets_only(tf: Terraform) -> None:
    vpc = tf.resource("google_compute_network", "vpc")
    assert vpc["auto_create_subnetworks"] is False
    subnet = tf.resource("google_compute_subnetwork", "workers")
    assert subnet["network"] == "${google_compute_network.vpc.id}"
    assert subnet["region"] == "${var.region}"
    assert subnet["ip_cidr_range"] == "${var.subnet_cidr}"
    router = tf.resource("google_compute_router", "nat")
    assert router["network"] == "${google_compute_network.vpc.id}"
    deny = tf.resource("google_compute_firewall", "deny_ingress")
    assert deny["direction"] == "INGRESS" and only(deny["deny"]) == {"protocol": "all"}


def test_nat_endpoint_independent_with_static_ports(tf: Terraform) -> None:
    nat = tf.resource("google_compute_router_nat", "nat")
    assert nat["enable_endpoint_independent_mapping"] is True
    assert nat["enable_dynamic_port_allocation"] is False
    assert nat["udp_idle_timeout_sec"] == "${var.nat_udp_idle_timeout_sec}"
    assert nat["min_ports_per_vm"] == "${var.nat_min_ports_per_vm}"
    assert nat["router"] == "${google_compute_router.nat.name}"
    assert nat["source_subnetwork_ip_ranges_to_nat"] == "LIST_OF_SUBNETWORKS"
    assert only(nat["subnetwork"]) == {
        "name": "${google_compute_subnetwork.workers.id}",
        "source_ip_ranges_to_nat": ["ALL_IP_RANGES"],
    }
    assert only(nat["log_config"]) == {
        "enable": "${var.nat_logging.enable}",
        "filter": "${var.nat_logging.filter}",
    }
    assert nat["nat_ip_allocate_option"] == "${local.nat_ip_allocate_option}"  # evaluated
    assert "google_compute_address.nat[*].self_link" in nat["nat_ips"]


def test_static_nat_addresses_are_optional_and_replaced_safely(tf: Terraform) -> None:
    address = tf.resource("google_compute_address", "nat")
    assert address["count"] == "${var.nat_static_ip_count}"
    assert address["address_type"] == "EXTERNAL"
    assert only(address["lifecycle"])["create_before_destroy"] is True
    assert tf.default("nat_static_ip_count") == 0


def test_nat_defaults(tf: Terraform) -> None:
    assert tf.default("nat_udp_idle_timeout_sec") == 30
    assert tf.default("nat_min_ports_per_vm") == 64
    assert tf.default("stun_refresh_sec") < tf.default("nat_udp_idle_timeout_sec")


def test_registry_keeps_the_last_images(tf: Terraform) -> None:
    repo = tf.resource("google_artifact_registry_repository", "images")
    assert repo["format"] == "DOCKER"
    assert repo["repository_id"] == "${var.artifact_repository_id}"
    assert repo["location"] == "${var.region}"
    assert repo["cleanup_policy_dry_run"] is False
    policies = {p["action"]: p for p in repo["cleanup_policies"]}
    assert only(policies["KEEP"]["most_recent_versions"]) == {
        "keep_count": "${var.artifact_keep_count}"
    }
    assert only(policies["DELETE"]["condition"])["tag_state"] == "ANY"
    assert tf.default("artifact_repository_id") == "holepunch"


def test_one_service_account_per_service_and_for_the_build(tf: Terraform) -> None:
    accounts = tf.resources("google_service_account")
    assert set(accounts) == {"rendezvous", "worker", "build"}
    for name in ("rendezvous", "worker"):
        assert tf.module(name)["service_account"] == f"${{google_service_account.{name}.email}}"


def test_build_account_has_only_what_deploying_needs(tf: Terraform) -> None:
    assert tf.locals["build_member"] == "serviceAccount:${google_service_account.build.email}"
    project_roles = {
        body["role"]: body["member"] for body in tf.resources("google_project_iam_member").values()
    }
    assert project_roles == {"roles/logging.logWriter": "${local.build_member}"}

    writer = tf.resource("google_artifact_registry_repository_iam_member", "build_writer")
    assert writer["role"] == "roles/artifactregistry.writer"
    assert writer["repository"] == "${google_artifact_registry_repository.images.name}"

    deploy = tf.resource("google_cloud_run_v2_service_iam_member", "build_developer")
    assert (deploy["role"], deploy["for_each"]) == ("roles/run.developer", "${local.services}")
    assert tf.locals["services"] == (
        "${merge({rendezvous = module.rendezvous.name}, "
        "local.worker_on_pool ? {} : {worker = module.worker[0].name})}"
    )
    # The worker pool (the default host) has its own IAM resource, on that pool only.
    pool = tf.resource("google_cloud_run_v2_worker_pool_iam_member", "build_developer")
    assert pool["count"] == "${local.worker_on_pool ? 1 : 0}"
    assert (pool["role"], pool["member"]) == ("roles/run.developer", "${local.build_member}")
    assert pool["name"] == "${module.worker_pool[0].name}"

    act_as = tf.resource("google_service_account_iam_member", "build_act_as")
    assert act_as["role"] == "roles/iam.serviceAccountUser"
    assert act_as["for_each"] == "${local.runtime_service_accounts}"
    assert set(tf.locals["runtime_service_accounts"]) == {"rendezvous", "worker"}

    source = tf.resource("google_storage_bucket_iam_member", "build_source_reader")
    assert source["role"] == "roles/storage.objectViewer"

    text = "".join((TF_DIR / name).read_text() for name in FILES)
    for broad in ("roles/owner", "roles/editor", "roles/run.admin", "roles/storage.admin"):
        assert broad not in text


def test_rendezvous_service(tf: Terraform) -> None:
    service = tf.module("rendezvous")
    assert service["name"] == "${var.rendezvous_service_name}"
    assert service["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert service["deletion_protection"] == "${var.deletion_protection}"
    assert service["revision"] == "${local.rendezvous_revision}"
    # Plain env and probes come from locals.tf (evaluated in test_terraform_eval.py); the
    # secrets from Secret Manager include the registry URL, which exists only with Redis.
    assert service["containers"] == {
        "rendezvous": "${merge(local.rendezvous_container, {env_from_secrets = "
        "merge(local.rendezvous_secret_env, local.registry_secret_env)})}"
    }
    assert (
        "${google_secret_manager_secret_iam_member.registry_url_accessor}" in service["depends_on"]
    )
    assert tf.default("rendezvous_concurrency") >= 250
    assert tf.default("rendezvous_min_instances") >= 1
    assert tf.default("trusted_proxy_cidrs") == ["169.254.0.0/16"]


def test_rendezvous_reaches_the_shared_registry_through_private_ranges_only(tf: Terraform) -> None:
    service = tf.module("rendezvous")
    assert service["vpc_access"] == (
        '${local.registry_enabled ? {egress = "PRIVATE_RANGES_ONLY", '
        "network = google_compute_network.vpc.id, "
        "subnetwork = google_compute_subnetwork.rendezvous[0].id} : null}"
    ), "the rendezvous joins the VPC only with the shared registry, for private ranges only"
    assert service["ingress"] == "INGRESS_TRAFFIC_ALL", "public ingress is unchanged"


def test_rendezvous_has_its_own_subnet_outside_the_nat(tf: Terraform) -> None:
    """Google advises against Cloud NAT on a subnet carrying private-ranges-only egress."""
    subnet = tf.resource("google_compute_subnetwork", "rendezvous")
    assert subnet["count"] == "${local.registry_count}"
    assert subnet["ip_cidr_range"] == "${var.rendezvous_subnet_cidr}"
    assert subnet["network"] == "${google_compute_network.vpc.id}"
    nat = tf.resource("google_compute_router_nat", "nat")
    assert nat["source_subnetwork_ip_ranges_to_nat"] == "LIST_OF_SUBNETWORKS"
    assert [s["name"] for s in nat["subnetwork"]] == ["${google_compute_subnetwork.workers.id}"]


def test_shared_registry_is_memorystore_with_auth_in_our_vpc(tf: Terraform) -> None:
    assert tf.default("shared_registry") == {}
    redis = tf.resource("google_redis_instance", "registry")
    assert tf.resource_file("google_redis_instance", "registry") == "worker_registry_redis.tf"
    assert redis["count"] == "${local.registry_count}"
    assert redis["authorized_network"] == "${google_compute_network.vpc.id}"
    assert redis["connect_mode"] == "DIRECT_PEERING"
    assert redis["region"] == "${var.region}"
    assert redis["tier"] == "${var.shared_registry.tier}"
    assert redis["memory_size_gb"] == "${var.shared_registry.memory_size_gb}"
    assert redis["redis_version"] == "${var.shared_registry.redis_version}"
    assert redis["reserved_ip_range"] == "${var.shared_registry.reserved_ip_range}"
    # The worker's ALL_TRAFFIC egress reaches the same VPC: AUTH keeps it out.
    assert redis["auth_enabled"] is True
    assert redis["transit_encryption_mode"] == "DISABLED"
    text = (TF_DIR / "worker_registry_redis.tf").read_text(encoding="utf-8")
    assert "checkov:skip=CKV_GCP_97:" in text


def test_registry_url_with_its_auth_string_is_a_secret_only_the_rendezvous_reads(
    tf: Terraform,
) -> None:
    secret = tf.resource("google_secret_manager_secret", "registry_url")
    assert secret["count"] == "${local.registry_count}"
    assert secret["secret_id"] == "${var.name_prefix}-registry-url"
    version = tf.resource("google_secret_manager_secret_version", "registry_url")
    assert version["secret"] == "${google_secret_manager_secret.registry_url[0].id}"
    redis = "google_redis_instance.registry[0]"
    assert version["secret_data"] == (
        f"redis://:${{urlencode({redis}.auth_string)}}@${{{redis}.host}}:${{{redis}.port}}/0"
    )
    accessor = tf.resource("google_secret_manager_secret_iam_member", "registry_url_accessor")
    assert accessor["count"] == "${local.registry_count}"
    assert accessor["role"] == "roles/secretmanager.secretAccessor"
    assert accessor["secret_id"] == "${google_secret_manager_secret.registry_url[0].secret_id}"
    assert accessor["member"] == "serviceAccount:${google_service_account.rendezvous.email}"
    # Pinned to the version Terraform wrote, so a new instance rolls the rendezvous.
    assert tf.locals["registry_secret_env"] == (
        "${local.registry_enabled ? {REGISTRY_URL = {secret = "
        "google_secret_manager_secret.registry_url[0].secret_id, version = "
        "google_secret_manager_secret_version.registry_url[0].version}} : {}}"
    )


def test_rendezvous_is_private_under_iam_and_public_only_with_token(tf: Terraform) -> None:
    """Token mode turns the invoker check off instead of granting allUsers, which the
    domain-restricted-sharing org policy refuses in many organisations."""
    service = tf.module("rendezvous")
    assert service["invoker_iam_disabled"] == "${var.rendezvous_public}"
    assert tf.variables["rendezvous_public"]["type"] == "bool"
    assert tf.default("rendezvous_public") is False
    assert tf.default("auth_mode") == "iam"
    public = [
        (rtype, name)
        for rtype in ("google_cloud_run_v2_service_iam_member", "google_project_iam_member")
        for name, body in tf.resources(rtype).items()
        if body["member"] in ("allUsers", "allAuthenticatedUsers")
    ]
    assert public == []
    text = "".join((TF_DIR / name).read_text() for name in FILES)
    assert '"allUsers"' not in text and '"allAuthenticatedUsers"' not in text


def test_the_in_memory_registry_caps_all_revisions_together(tf: Terraform) -> None:
    """The revision's cap alone lets a rollout run old and new instances side by side."""
    assert tf.module("rendezvous")["max_instance_count"] == "${var.rendezvous_max_instances}"


def test_worker_invokes_the_rendezvous_under_iam(tf: Terraform) -> None:
    grant = tf.resource("google_cloud_run_v2_service_iam_member", "worker_invoker")
    assert grant["count"] == '${var.auth_mode == "iam" ? 1 : 0}'
    assert grant["role"] == "roles/run.invoker"
    assert grant["member"] == "serviceAccount:${google_service_account.worker.email}"
    assert grant["name"] == "${module.rendezvous.name}"
    assert grant["location"] == "${module.rendezvous.location}"
    operators = tf.resource("google_cloud_run_v2_service_iam_member", "operator_invokers")
    assert operators["for_each"] == "${toset(var.rendezvous_invokers)}"
    assert (operators["role"], operators["member"]) == ("roles/run.invoker", "${each.value}")
    assert operators["name"] == "${module.rendezvous.name}"
    assert tf.default("rendezvous_invokers") == []


def test_secrets_read_by_their_services_only(tf: Terraform) -> None:
    accessor = tf.resource("google_secret_manager_secret_iam_member", "runtime_accessor")
    assert accessor["for_each"] == "${local.secret_accessors}"
    assert accessor["role"] == "roles/secretmanager.secretAccessor"
    assert accessor["secret_id"] == "${each.value.secret}"
    assert accessor["member"] == "${each.value.member}"
    assert accessor["project"] == "${var.project_id}"
    accessors = tf.locals["secret_accessors"]
    assert "rendezvous = local.rendezvous_secret_env, worker = local.worker_secret_env" in accessors
    assert "roles/secretmanager" not in json.dumps(tf.resources("google_project_iam_member"))
    for name in ("rendezvous_token_secret", "admin_token_secret"):
        assert tf.default(name) is None
        assert tf.variables[name]["validation"], f"{name} is not validated"
    assert tf.default("debug_endpoints") is False


WORKER_VPC = {
    "egress": "ALL_TRAFFIC",
    "network": "${google_compute_network.vpc.id}",
    "subnetwork": "${google_compute_subnetwork.workers.id}",
}


def test_worker_pool_is_the_default_host(tf: Terraform) -> None:
    assert tf.default("worker_host") == "worker_pool"
    assert tf.default("worker_instance_count") >= 1
    pool = tf.module("worker_pool")
    assert pool["source"] == "./modules/cloud-run-worker-pool"
    assert pool["count"] == "${local.worker_on_pool ? 1 : 0}"
    assert tf.module("worker")["count"] == "${local.worker_on_pool ? 0 : 1}"
    assert pool["name"] == "${var.worker_service_name}"
    assert pool["instance_count"] == "${var.worker_instance_count}"
    assert pool["deletion_protection"] == "${var.deletion_protection}"
    assert pool["service_account"] == "${google_service_account.worker.email}"
    # Direct VPC egress for all traffic, so Cloud NAT applies to the pool as to the service.
    assert pool["vpc_access"] == WORKER_VPC
    # The worker's env, secrets and the application's sidecars, as on the service.
    assert pool["primary_container"] == "worker"
    assert pool["containers"] == (
        "${merge(local.app_containers, {worker = merge(local.worker_pool_container, "
        "{env = merge(local.worker_env, {RENDEZVOUS_SERVICE_URL = module.rendezvous.uri}), "
        "env_from_secrets = local.worker_secret_env})})}"
    )
    assert "${google_compute_router_nat.nat}" in pool["depends_on"]


def test_worker_pool_module_scales_manually_and_ignores_the_deployed_image(
    tf: Terraform,
) -> None:
    from tests.infra.conftest import load_terraform

    module = load_terraform(TF_DIR / "modules" / "cloud-run-worker-pool")
    pool = module.resource("google_cloud_run_v2_worker_pool", "pool")
    assert only(pool["scaling"]) == {
        "scaling_mode": "MANUAL",
        "manual_instance_count": "${var.instance_count}",
    }
    ignored = {field.strip("${}") for field in only(pool["lifecycle"])["ignore_changes"]}
    assert "template[0].containers[0].image" in ignored
    assert module.locals["container_names"] == (
        "${concat([var.primary_container], "
        "sort(setsubtract(keys(var.containers), [var.primary_container])))}"
    ), "the deployed container must be containers[0], whose image is ignored"


def test_worker_service(tf: Terraform) -> None:
    service = tf.module("worker")
    assert service["name"] == "${var.worker_service_name}"
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert service["deletion_protection"] == "${var.deletion_protection}"
    assert service["revision"] == "${local.worker_revision}"
    # Direct VPC egress for all traffic: the worker's UDP leaves through our Cloud NAT.
    assert service["vpc_access"] == WORKER_VPC
    # AUTH_MODE=iam: the worker's ID token audience is the rendezvous's own URL.
    assert service["primary_container"] == "worker"
    assert service["containers"] == (
        "${merge(local.app_service_containers, {worker = merge(local.worker_container, "
        "{env = merge(local.worker_env, {RENDEZVOUS_SERVICE_URL = module.rendezvous.uri}), "
        "env_from_secrets = local.worker_secret_env})})}"
    )
    assert "${google_compute_router_nat.nat}" in service["depends_on"]
    assert (tf.default("worker_min_instances"), tf.default("worker_max_instances")) == (1, 2)
    assert tf.default("stun_servers") == ["stun.l.google.com:19302", "stun1.l.google.com:19302"]


def test_terraform_owns_the_service_and_cloud_build_the_image(tf: Terraform) -> None:
    """Both start from the placeholder (locals.tf); the module ignores later image changes."""
    assert tf.default("placeholder_image") == "us-docker.pkg.dev/cloudrun/container/hello"


def test_service_names_and_deletion_protection_defaults(tf: Terraform) -> None:
    assert tf.default("rendezvous_service_name") == "rendezvous"
    assert tf.default("worker_service_name") == "worker"
    assert tf.variables["deletion_protection"]["type"] == "bool"


def test_build_trigger_is_off_unless_configured(tf: Terraform) -> None:
    trigger = tf.resource("google_cloudbuild_trigger", "push")
    assert trigger["count"] == "${var.build_trigger == null ? 0 : 1}"
    assert tf.default("build_trigger") is None
    assert trigger["filename"] == "cloudbuild.yaml"
    assert trigger["service_account"] == "${google_service_account.build.id}"
    assert trigger["substitutions"] == "${local.build_substitutions}"
    assert only(only(trigger["github"])["push"])["branch"] == "${var.build_trigger.branch_regex}"


def test_log_metrics_and_dashboard(tf: Terraform) -> None:
    metric = tf.resource("google_logging_metric", "events")
    assert metric["for_each"] == "${local.log_metrics}"
    assert metric["filter"] == "${each.value.filter}"
    descriptor = only(metric["metric_descriptor"])
    assert descriptor["metric_kind"] == "DELTA"
    # A distribution of one field (value_field), or a counter.
    assert metric["value_extractor"] == (
        '${each.value.value_field == null ? null : "EXTRACT(jsonPayload.${each.value.value_field})"}'
    )
    assert (
        descriptor["value_type"] == '${each.value.value_field == null ? "INT64" : "DISTRIBUTION"}'
    )
    dashboard = tf.resource("google_monitoring_dashboard", "holepunch")
    assert dashboard["dashboard_json"] == "${jsonencode(local.dashboard)}"
    charts = tf.locals["dashboard_charts"]
    for metric_type in (
        "run.googleapis.com/request_count",
        "run.googleapis.com/container/instance_count",
    ):
        assert metric_type in charts
    assert "logging.googleapis.com/user/${google_logging_metric.events[name].name}" in charts
    # Positions come from locals.tf (evaluated: test_terraform_eval.py), never written as 0.
    assert "local.dashboard_tile_layout[i]" in json.dumps(tf.locals["dashboard"])


def test_outputs(tf: Terraform) -> None:
    outputs = tf.outputs
    for name in (
        "rendezvous_url",
        "nat_ips",
        "image_repository",
        "rendezvous_service_name",
        "worker_service_name",
        "deploy_command",
        "logs_commands",
        "verify_command",
        "worker_host",
        "alert_policies",
    ):
        assert name in outputs, name
        assert outputs[name].get("description"), f"output {name} has no description"
    assert outputs["rendezvous_url"]["value"] == "${module.rendezvous.uri}"
    assert outputs["nat_ips"]["value"] == "${google_compute_address.nat[*].address}"


def test_variables_typed_described_alphabetical(tf: Terraform) -> None:
    names = [next(iter(block)) for block in tf.files["variables.tf"]["variable"]]
    assert names == sorted(names)
    for name, body in tf.variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert len(body.get("description", "")) > 10, f"variable {name} has no description"
    for name in (
        "region",
        "project_id",
        "nat_udp_idle_timeout_sec",
        "nat_min_ports_per_vm",
        "worker_min_instances",
        "worker_max_instances",
        "rendezvous_min_instances",
        "stun_servers",
        "auth_mode",
        "rendezvous_public",
        "rendezvous_limits",
        "rendezvous_invokers",
        "rendezvous_token_secret",
        "admin_token_secret",
        "debug_endpoints",
        "rendezvous_max_instances",
        "shared_registry",
        "worker_host",
        "worker_instance_count",
        "app_containers",
        "worker_data_plane",
        "alert_notification_channels",
        "alert_thresholds",
        "expected_workers",
        "rendezvous_subnet_cidr",
    ):
        assert tf.variables[name].get("validation"), f"variable {name} is not validated"


def test_readme_tables_list_every_variable_and_output(tf: Terraform) -> None:
    readme = (TF_DIR / "README.md").read_text(encoding="utf-8")
    for name in [*tf.variables, *tf.outputs]:
        assert f"| `{name}` |" in readme, f"README.md does not list {name}"
