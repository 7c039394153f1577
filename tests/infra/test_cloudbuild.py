"""cloudbuild.yaml agrees with the Terraform, deploys in order, and its step graph is sound."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import REPO, Terraform, require_module

IMAGE = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/"
SERVICES = ("rendezvous", "worker")


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    yaml = require_module("yaml", "install the dev extras (pyyaml)")
    with (REPO / "cloudbuild.yaml").open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


@pytest.fixture(scope="module")
def steps(build: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ids = [step.get("id") for step in build["steps"]]
    assert all(ids), "every step needs an id"
    assert len(ids) == len(set(ids)), f"step ids are not unique: {ids}"
    return {step["id"]: step for step in build["steps"]}


def ancestors(steps: dict[str, dict[str, Any]], step_id: str) -> set[str]:
    """Every step STEP_ID waits for, directly or not (Cloud Build: no waitFor = all before)."""
    order = list(steps)
    wait = steps[step_id].get("waitFor")
    direct = set(order[: order.index(step_id)]) if wait is None else set(wait) - {"-"}
    found = set(direct)
    for parent in direct:
        found |= ancestors(steps, parent)
    return found


def test_wait_for_names_earlier_steps(steps: dict[str, dict[str, Any]]) -> None:
    seen: set[str] = set()
    for step_id, step in steps.items():
        for parent in step.get("waitFor", []):
            assert parent == "-" or parent in seen, f"{step_id} waits for unknown step {parent}"
        seen.add(step_id)


def test_usage_comment(build: dict[str, Any]) -> None:
    head = (REPO / "cloudbuild.yaml").read_text(encoding="utf-8").split("\nsubstitutions:")[0]
    assert "gcloud builds submit" in head
    assert "--config=cloudbuild.yaml" in head
    assert "--substitutions=COMMIT_SHA=" in head
    for key in build["substitutions"]:
        assert f"{key}=" in head, f"usage comment does not set {key}"


def test_substitution_defaults_match_terraform(build: dict[str, Any], tf: Terraform) -> None:
    subs = build["substitutions"]
    assert subs == {
        "_REGION": tf.default("region"),
        "_REPOSITORY": tf.default("artifact_repository_id"),
        "_RENDEZVOUS_SERVICE": tf.default("rendezvous_service_name"),
        "_WORKER_SERVICE": tf.default("worker_service_name"),
        "_WORKER_HOST": tf.default("worker_host"),
    }
    # The trigger and scripts/deploy pass exactly these, from the live variables.
    assert set(tf.locals["build_substitutions"]) == set(subs)
    assert tf.locals["build_substitutions"] == {
        "_REGION": "${var.region}",
        "_REPOSITORY": "${var.artifact_repository_id}",
        "_RENDEZVOUS_SERVICE": "${var.rendezvous_service_name}",
        "_WORKER_SERVICE": "${var.worker_service_name}",
        "_WORKER_HOST": "${var.worker_host}",
    }


def test_logging_for_a_user_managed_service_account(build: dict[str, Any]) -> None:
    assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY"


@pytest.mark.parametrize("name", SERVICES)
def test_images_built_from_the_root_with_their_dockerfile(
    steps: dict[str, dict[str, Any]], tf: Terraform, name: str
) -> None:
    args = steps[f"build-{name}"]["args"]
    assert args[0] == "build" and args[-1] == "."
    dockerfile = args[args.index("-f") + 1]
    assert dockerfile == "services/Dockerfile" and (REPO / dockerfile).exists()
    build_args = [args[i + 1] for i, arg in enumerate(args) if arg == "--build-arg"]
    assert build_args == [f"SERVICE={name}"]
    tags = [args[i + 1] for i, arg in enumerate(args) if arg == "-t"]
    assert tags == [f"{IMAGE}{name}:$COMMIT_SHA", f"{IMAGE}{name}:latest"]
    # Terraform's image path: <region>-docker.pkg.dev/<project>/<repository>/<name>.
    assert tf.locals["images"][name] == f"${{local.image_repository}}/{name}"


def test_images_listed(build: dict[str, Any]) -> None:
    assert sorted(build["images"]) == sorted(
        f"{IMAGE}{name}:{tag}" for name in SERVICES for tag in ("$COMMIT_SHA", "latest")
    )


def test_builds_run_in_parallel_and_tests_gate_the_push(steps: dict[str, dict[str, Any]]) -> None:
    assert "build-worker" not in ancestors(steps, "build-rendezvous")
    assert "build-rendezvous" not in ancestors(steps, "build-worker")
    assert "pytest" in " ".join(steps["test"]["args"])
    for name in SERVICES:
        push = steps[f"push-{name}"]
        assert push["args"][:2] == ["push", "--all-tags"] and push["args"][2] == f"{IMAGE}{name}"
        assert {"test", f"build-{name}"} <= ancestors(steps, f"push-{name}")


GCLOUD_IMAGE = "gcr.io/google.com/cloudsdktool/google-cloud-cli:slim"


def test_deploys_the_rendezvous_then_the_worker_image_only(
    steps: dict[str, dict[str, Any]],
) -> None:
    assert "deploy-rendezvous" in ancestors(steps, "deploy-worker")
    for name in SERVICES:
        assert {"push-rendezvous", "push-worker"} <= ancestors(steps, f"deploy-{name}")
        # The current Cloud SDK image; cloud-sdk is the legacy name.
        assert steps[f"deploy-{name}"]["name"] == GCLOUD_IMAGE
    step = steps["deploy-rendezvous"]
    assert step["entrypoint"] == "gcloud"
    args = step["args"]
    assert args[:4] == ["run", "services", "update", "${_RENDEZVOUS_SERVICE}"]
    flags = sorted(arg.split("=")[0] for arg in args[4:])
    assert flags == ["--image", "--quiet", "--region"], (
        "deploy-rendezvous must change the image only"
    )
    assert f"--image={IMAGE}rendezvous:$COMMIT_SHA" in args
    assert "--region=${_REGION}" in args


def worker_deploy_command(steps: dict[str, dict[str, Any]], worker_host: str) -> list[str]:
    """The gcloud command deploy-worker's script runs for WORKER_HOST, substituted as
    Cloud Build would ($$ becomes $), run with a fake gcloud that prints its arguments."""
    import subprocess

    step = steps["deploy-worker"]
    assert step["entrypoint"] == "bash" and step["args"][0] == "-ceu"
    script = step["args"][1]
    for key, value in {
        "${_WORKER_HOST}": worker_host,
        "${_WORKER_SERVICE}": "wrk",
        "${_REGION}": "europe-west4",
        "${_REPOSITORY}": "repo",
        "$PROJECT_ID": "proj",
        "$COMMIT_SHA": "abc123",
    }.items():
        script = script.replace(key, value)
    script = script.replace("$$", "$")
    fake = 'gcloud() { printf "%s\\n" "$@"; }\n'
    result = subprocess.run(
        ["bash", "-ceu", fake + script], capture_output=True, text=True, check=False, timeout=30
    )
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("worker_host", "kind"), [("worker_pool", "worker-pools"), ("service", "services")]
)
def test_the_worker_is_deployed_to_its_host_image_only(
    steps: dict[str, dict[str, Any]], worker_host: str, kind: str
) -> None:
    """Only the worker container's image changes: the application's sidecars are Terraform's."""
    args = worker_deploy_command(steps, worker_host)
    assert args[:4] == ["run", kind, "update", "wrk"]
    assert sorted(arg.split("=")[0] for arg in args[4:]) == [
        "--container",
        "--image",
        "--quiet",
        "--region",
    ]
    assert "--container=worker" in args
    assert "--image=europe-west4-docker.pkg.dev/proj/repo/worker:abc123" in args


def test_an_unknown_worker_host_stops_the_deploy(steps: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(AssertionError, match="_WORKER_HOST must be worker_pool or service"):
        worker_deploy_command(steps, "vm")


def test_the_test_step_installs_the_dev_tools_it_tests(steps: dict[str, dict[str, Any]]) -> None:
    """tests/unit imports holepunch_devtools, which only tools/pyproject.toml installs."""
    script = " ".join(steps["test"]["args"])
    install = next(command for command in script.split("&&") if "pip install" in command)
    assert "'.[dev]'" in install and "./tools" in install.split()
    assert (REPO / "tools" / "pyproject.toml").exists()
