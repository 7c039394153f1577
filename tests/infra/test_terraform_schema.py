"""infra/terraform against the google provider's schema and our modules' variables.

The schema is extracted from the pinned CDK wheel on PyPI on first use and cached
outside the repository (tests/infra/provider_schema.py); later runs read the cache.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.infra import provider_schema, schema_check
from tests.infra.conftest import TF_DIR
from tests.support.strict import skip_or_fail


@pytest.fixture(scope="session")
def schema() -> provider_schema.ProviderSchema:
    try:
        return provider_schema.load_schema()
    except provider_schema.SchemaExtractionError as error:
        skip_or_fail(f"google provider schema unavailable (PyPI unreachable?): {error}")


def test_schema_is_the_pinned_provider_release(schema: provider_schema.ProviderSchema) -> None:
    assert schema.provider_version == "8.7.0"
    assert provider_schema.PACKAGE_VERSION in schema.source_package
    run = schema.resources["google_cloud_run_v2_service"]
    assert run.arguments["name"] is True and run.arguments["ingress"] is False
    template = run.blocks["template"]
    assert template.required and not template.repeatable
    assert template.block.blocks["containers"].repeatable
    assert "google_compute_network" in schema.data_sources
    # What the provider range's lower bound (7.10) is for: the service-level instance cap,
    # invoker_iam_disabled, and worker pools with probes and container start order.
    assert "max_instance_count" in run.blocks["scaling"].block.arguments
    assert "invoker_iam_disabled" in run.arguments
    pool = schema.resources["google_cloud_run_v2_worker_pool"].blocks["template"].block
    container = pool.blocks["containers"].block
    assert {"startup_probe", "liveness_probe"} <= set(container.blocks)
    assert "depends_on" in container.arguments
    assert "port" in container.blocks["startup_probe"].block.blocks["http_get"].block.arguments


def test_terraform_matches_the_provider_schema_and_module_variables(
    schema: provider_schema.ProviderSchema,
) -> None:
    report = schema_check.check_directory(TF_DIR, schema)
    assert report.problems == []
    assert report.resources_checked >= 30, "the check saw too few resources: parsing changed?"
    # The rendezvous and the worker's service through modules/cloud-run-service, the
    # worker pool through modules/cloud-run-worker-pool.
    assert report.module_calls_checked == 3


MISTAKES = """
provider "google" {
  regoin = "x"
}

resource "google_compute_network" "vpc" {
  auto_create_subnetwork = false
}

resource "google_cloud_run_v2_service" "svc" {
  name     = "s"
  location = "l"
  template {
    scaling {
      min_instance_count = 1
    }
    containers {
      image = "i"
      resources {
        limits {
          cpu = "1"
        }
      }
    }
    dynamic "vpc_acess" {
      for_each = []
      content {}
    }
  }
  template {}
  lifecycle {
    ignore_change = []
  }
}

resource "google_not_a_type" "x" {}

resource "random_id" "other_providers_are_not_checked" {
  bogus = 1
}

module "svc" {
  source  = "./mod"
  nmae    = "x"
  for_each = {}
}
"""


def test_schema_check_reports_each_mistake(
    schema: provider_schema.ProviderSchema, tmp_path: Path
) -> None:
    (tmp_path / "main.tf").write_text(MISTAKES, encoding="utf-8")
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "variables.tf").write_text(
        'variable "name" {\n  type = string\n}\n\nvariable "labels" {\n  default = {}\n}\n',
        encoding="utf-8",
    )
    report = schema_check.check_directory(tmp_path, schema)
    network = "main.tf: google_compute_network.vpc"
    service = "main.tf: google_cloud_run_v2_service.svc"
    expected = {
        "main.tf: provider google: unknown argument 'regoin' (did you mean 'region'?)",
        f"{network}: unknown argument 'auto_create_subnetwork' "
        "(did you mean 'auto_create_subnetworks'?)",
        f"{network}: missing required argument 'name'",
        f"{service}.template.containers.resources: 'limits' is an argument, written as a block",
        f"{service}.template: dynamic \"vpc_acess\": unknown block (did you mean 'vpc_access'?)",
        f"{service}: block 'template' is allowed once, given 2 times",
        f"{service}.lifecycle: unknown lifecycle argument 'ignore_change'",
        "main.tf: module.svc: 'nmae' is not a variable of ./mod (did you mean 'name'?)",
        "main.tf: module.svc: missing required variable 'name' of ./mod",
    }
    assert expected <= set(report.problems), "\n".join(report.problems)
    assert any(
        p.startswith("main.tf: google_not_a_type.x: unknown resource type") for p in report.problems
    )
    assert not [p for p in report.problems if "random_id" in p]
    assert report.module_calls_checked == 1


def test_schema_is_cached_once_extracted(tmp_path: Path) -> None:
    cached = tmp_path / f"google-provider-schema-{provider_schema.PACKAGE_VERSION}.json.gz"
    cached.write_bytes(
        gzip.compress(
            b'{"provider_version": "0.0.1", "source_package": "fake", "resources": {},'
            b' "data_sources": {}, "provider_config": {"arguments": {}, "blocks": {}}}'
        )
    )
    # A cached file is read as is: no download, whatever it holds.
    assert provider_schema.load_schema(tmp_path).provider_version == "0.0.1"


STATIC_TYPE_CLASS = """
class ThingResource extends cdktn.TerraformResource {
    static tfResourceType = "google_thing";
    constructor(scope, id, config) {
        this._displayName = config.displayName;
    }
    synthesizeHclAttributes() {
        const attrs = {
            display_name: {
                value: cdktn.stringToHclTerraform(this._displayName),
                isBlock: false,
                type: "simple",
            },
        };
    }
}
"""


def test_resource_types_declared_inside_the_class_are_read() -> None:
    """Newer CDK releases write `static tfResourceType` in the class, not after it."""
    fields, types = provider_schema._javascript_fields(STATIC_TYPE_CLASS)
    assert types == {"ThingResource": "google_thing"}
    assert fields["ThingResource"] == {"displayName": ("display_name", False)}
