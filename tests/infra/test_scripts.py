"""Operator scripts: shellcheck, --help, --dry-run, prerequisite errors, and real runs against fakes.

The fakes are a `gcloud` and a `terraform` on PATH that record their arguments and print
canned answers, and a local HTTP server standing in for the rendezvous: no traffic
leaves this machine.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.infra.conftest import SCRIPTS, TF_DIR, require_tool

COMMANDS = ("bootstrap", "deploy", "verify", "logs")
SHELL_SCRIPTS = sorted(
    path
    for path in SCRIPTS.rglob("*")
    if path.is_file()
    and (path.suffix == ".sh" or path.read_text(errors="ignore").startswith("#!/usr/bin/env bash"))
)
TOOLS = ("bash", "dirname", "basename", "cat", "env", "git", "head", "tr")

FAKE_GCLOUD = r"""#!/usr/bin/env bash
printf '%s\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@")" >> "$FAKE_LOG"
case "$1 $2" in
  "config get-value") echo "${FAKE_PROJECT:-(unset)}" ;;
  "logging read") cat "${FAKE_LOGGING_JSON:-/dev/null}" ;;
  "run services") echo "${FAKE_URL:-}" ;;
  "storage buckets") [[ "$3" != describe ]] ;;
  "org-policies describe" | "resource-manager org-policies")
    # One file per constraint and API under $FAKE_ORG_POLICIES (v2.NAME.json, v1.NAME.json):
    # its JSON is the answer; no file is a PERMISSION_DENIED.
    if [[ "$1" == org-policies ]]; then api=v2 name="$3"; else api=v1 name="$4"; fi
    file="${FAKE_ORG_POLICIES:-/nonexistent}/${api}.${name}.json"
    if [[ -f "$file" ]]; then cat "$file"; else
      echo "ERROR: (gcloud.${1}) PERMISSION_DENIED: orgpolicy.policies.get on ${name}" >&2
      exit 1
    fi ;;
  "auth print-identity-token")
    # gcloud refuses --audiences for a user account (print_identity_token.py).
    if [[ -n "${FAKE_USER_ACCOUNT:-}" && " $* " == *" --audiences="* ]]; then
      echo "ERROR: (gcloud.auth.print-identity-token) Invalid account type for \`--audiences\`. Requires valid service account." >&2
      exit 1
    fi
    echo fake-token ;;
esac
"""

FAKE_TERRAFORM = r"""#!/usr/bin/env bash
printf '%s\n' "$(python3 -c 'import json,sys; print(json.dumps(["terraform", *sys.argv[1:]]))' "$@")" >> "$FAKE_LOG"
if [[ "$2" == output ]]; then
  [[ -z "${FAKE_NO_STATE:-}" ]] || { echo "No outputs found" >&2; exit 1; }
  python3 - "$3" "${4:-}" <<'PY'
import json, os, sys
outputs = {
    "project_id": "tf-project",
    "region": "europe-west4",
    "build_service_account": "projects/tf-project/serviceAccounts/holepunch-build@tf-project.iam.gserviceaccount.com",
    "build_source_staging_dir": "gs://tf-project-holepunch-build/source",
    "cloudbuild_substitutions": "_REGION=europe-west4,_REPOSITORY=holepunch,_RENDEZVOUS_SERVICE=rendezvous,_WORKER_SERVICE=worker",
    "rendezvous_service_name": os.environ.get("FAKE_RENDEZVOUS_NAME", "rendezvous"),
    "worker_service_name": os.environ.get("FAKE_WORKER_NAME", "worker"),
    "worker_host": os.environ.get("FAKE_WORKER_HOST", "service"),
}
flag, name = sys.argv[1], sys.argv[2]
if flag == "-json":
    print(json.dumps({k: {"sensitive": False, "type": "string", "value": v} for k, v in outputs.items()}))
elif name in outputs:
    sys.stdout.write(outputs[name])
else:
    sys.exit(1)
PY
fi
"""


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH with only basic tools (no gcloud, no terraform)."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (directory / tool).symlink_to(found)
    (directory / "python3").symlink_to(sys.executable)
    return directory


@pytest.fixture
def fakes(bin_dir: Path, tmp_path: Path) -> Path:
    for name, text in (("gcloud", FAKE_GCLOUD), ("terraform", FAKE_TERRAFORM)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return tmp_path / "calls.jsonl"


def run(
    script: str, *args: str, path: Path, log: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": str(path),
        "HOME": os.environ.get("HOME", "/tmp"),
        "FAKE_LOG": str(log or path / "calls.jsonl"),
        **env,
    }
    return subprocess.run(
        [str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def gcloud_calls(log: Path) -> list[list[str]]:
    """The gcloud calls only (the scripts also read `terraform output` for their defaults)."""
    return [c for c in calls(log) if c[0] != "terraform"]


def test_shellcheck_every_shell_script() -> None:
    shellcheck = require_tool(
        "shellcheck", "apt-get install shellcheck (make test does it as root)"
    )
    assert SHELL_SCRIPTS, "no shell script found"
    result = subprocess.run(
        [shellcheck, "-x", *map(str, SHELL_SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=SCRIPTS.parent,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", COMMANDS)
def test_help_and_strict_mode(script: str, bin_dir: Path) -> None:
    path = SCRIPTS / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    text = path.read_text()
    if text.startswith("#!/usr/bin/env bash"):
        assert "set -euo pipefail" in text
    else:
        assert text.startswith("#!/usr/bin/env python3")
    result = run(script, "--help", path=bin_dir)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower() and "--dry-run" in result.stdout


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("bootstrap", ["--project", "p-1"]),
        ("bootstrap", ["preflight", "--project", "p-1"]),
        ("logs", ["--project", "p-1", "stun"]),
        ("verify", ["--project", "p-1"]),
    ],
)
def test_missing_gcloud_is_a_clear_error(script: str, args: list[str], bin_dir: Path) -> None:
    result = run(script, *args, path=bin_dir)
    assert result.returncode == 2
    assert "gcloud not found" in result.stderr


def test_deploy_needs_terraform(bin_dir: Path, fakes: Path) -> None:
    (bin_dir / "terraform").unlink()
    result = run("deploy", path=bin_dir, log=fakes)
    assert result.returncode == 2 and "terraform not found" in result.stderr


@pytest.mark.parametrize("script", ["bootstrap", "logs", "verify"])
def test_missing_project_is_a_clear_error(script: str, bin_dir: Path, fakes: Path) -> None:
    args = ["stun"] if script == "logs" else ["--no-init"] if script == "bootstrap" else []
    result = run(script, *args, path=bin_dir, log=fakes, FAKE_NO_STATE="1")
    assert result.returncode == 2
    assert "no Google Cloud project" in result.stderr


def test_bootstrap_dry_run_prints_and_runs_nothing(bin_dir: Path, fakes: Path) -> None:
    result = run(
        "bootstrap",
        "--dry-run",
        "--project",
        "demo-1",
        "--region",
        "europe-west4",
        path=bin_dir,
        log=fakes,
    )
    assert result.returncode == 0, result.stderr
    assert calls(fakes) == []
    out = result.stdout
    assert "+ gcloud services enable serviceusage.googleapis.com" in out
    assert "gs://demo-1-holepunch-tfstate" in out and "--versioning" in out
    assert "init -backend-config=bucket=demo-1-holepunch-tfstate" in out


def test_bootstrap_creates_the_state_bucket_and_inits(bin_dir: Path, fakes: Path) -> None:
    # Before the first apply Terraform has no state: the project comes from gcloud config.
    result = run(
        "bootstrap", path=bin_dir, log=fakes, FAKE_PROJECT="cfg-project", FAKE_NO_STATE="1"
    )
    assert result.returncode == 0, result.stderr
    made = [
        c for c in calls(fakes) if c[:2] != ["terraform", "-chdir=" + str(TF_DIR)] or "init" in c
    ]
    assert ["config", "get-value", "project"] in made
    assert made[1][:2] == ["services", "enable"] and "--project=cfg-project" in made[1]
    assert made[3][:4] == ["storage", "buckets", "create", "gs://cfg-project-holepunch-tfstate"]
    assert made[4] == [
        "storage",
        "buckets",
        "update",
        "gs://cfg-project-holepunch-tfstate",
        "--versioning",
    ]
    assert (
        made[5][0] == "terraform"
        and "-backend-config=bucket=cfg-project-holepunch-tfstate" in made[5]
    )


def test_deploy_submits_the_build_with_terraform_outputs(bin_dir: Path, fakes: Path) -> None:
    result = run("deploy", "--tag", "abc123", path=bin_dir, log=fakes)
    assert result.returncode == 0, result.stderr
    submit = [c for c in calls(fakes) if c[:2] == ["builds", "submit"]]
    assert len(submit) == 1
    args = submit[0]
    assert "--config=cloudbuild.yaml" in args and "." in args
    assert "--project=tf-project" in args and "--region=europe-west4" in args
    assert (
        "--service-account=projects/tf-project/serviceAccounts/holepunch-build@tf-project.iam.gserviceaccount.com"
        in args
    )
    assert "--gcs-source-staging-dir=gs://tf-project-holepunch-build/source" in args
    assert (
        "--substitutions=COMMIT_SHA=abc123,_REGION=europe-west4,_REPOSITORY=holepunch,"
        "_RENDEZVOUS_SERVICE=rendezvous,_WORKER_SERVICE=worker"
    ) in args


def test_deploy_dry_run_and_bad_tag(bin_dir: Path, fakes: Path) -> None:
    result = run("deploy", "--dry-run", "--tag", "v1", path=bin_dir, log=fakes)
    assert result.returncode == 0, result.stderr
    assert "+ gcloud builds submit . --config=cloudbuild.yaml" in result.stdout
    assert not [c for c in calls(fakes) if c[0] != "terraform"], "dry-run ran gcloud"
    bad = run("deploy", "--tag", "no spaces", path=bin_dir, log=fakes)
    assert bad.returncode == 2 and "valid image tag" in bad.stderr


def entries(
    tmp_path: Path,
    payload: dict[str, Any],
    resource: dict[str, Any] | None = None,
) -> Path:
    path = tmp_path / "entries.json"
    entry = {
        "timestamp": "2026-01-01T00:00:00Z",
        "severity": "INFO",
        "resource": resource
        or {"type": "cloud_run_revision", "labels": {"service_name": "worker"}},
        "jsonPayload": payload,
    }
    path.write_text(json.dumps([entry]))
    return path


def test_logs_runs_the_saved_query(bin_dir: Path, fakes: Path, tmp_path: Path) -> None:
    data = entries(tmp_path, {"event": "stun_result", "message": "mapped", "udp_ip": "203.0.113.7"})
    result = run(
        "logs",
        "stun",
        "--since",
        "2h",
        "--project",
        "p-9",
        path=bin_dir,
        log=fakes,
        FAKE_LOGGING_JSON=str(data),
    )
    assert result.returncode == 0, result.stderr
    (call,) = [c for c in calls(fakes) if c[0] != "terraform"]
    assert call[:2] == ["logging", "read"]
    assert call[2] == (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="worker" AND '
        'jsonPayload.event=("stun_request" OR "stun_result" OR "stun_failed")'
    )
    assert {"--project=p-9", "--freshness=2h", "--format=json"} <= set(call)
    assert "stun_result" in result.stdout and "udp_ip=203.0.113.7" in result.stdout


def test_logs_names_a_worker_pools_entries(bin_dir: Path, fakes: Path, tmp_path: Path) -> None:
    """A worker pool's entries hold its name in worker_pool_name, not service_name."""
    pool = {"type": "cloud_run_worker_pool", "labels": {"worker_pool_name": "hp-pool"}}
    data = entries(tmp_path, {"event": "stun_result", "message": "mapped"}, pool)
    result = run(
        "logs",
        "stun",
        "--project",
        "p-9",
        path=bin_dir,
        log=fakes,
        FAKE_LOGGING_JSON=str(data),
        FAKE_WORKER_HOST="worker_pool",
    )
    assert result.returncode == 0, result.stderr
    assert " hp-pool " in result.stdout and " ? " not in result.stdout


def test_logs_worker_selects_on_worker_id_in_both_services(bin_dir: Path, fakes: Path) -> None:
    result = run(
        "logs",
        "--dry-run",
        "--project",
        "p-9",
        "--worker-service",
        "w2",
        "worker",
        "abc-1",
        path=bin_dir,
    )
    assert result.returncode == 0, result.stderr
    assert 'service_name=("rendezvous" OR "w2") AND jsonPayload.worker_id="abc-1"' in result.stdout


def test_logs_rejects_unknown_queries_and_bad_durations(bin_dir: Path) -> None:
    assert run("logs", "nope", "--project", "p", path=bin_dir).returncode == 2
    assert (
        run("logs", "stun", "--since", "yesterday", "--project", "p", path=bin_dir).returncode == 2
    )
    assert run("logs", "worker", "--project", "p", path=bin_dir).returncode == 2
    listed = run("logs", "list", path=bin_dir)
    assert listed.returncode == 0 and "endpoint-updates" in listed.stdout


ADMIN = "admin-token-0123456789"


class FakeRendezvous(http.server.BaseHTTPRequestHandler):
    """The rendezvous's HTTP side: /debug/* 404 unless debug_on, 401 without the admin
    token; with `identity` set, Cloud Run's front end too (403 HTML without that ID token
    in X-Serverless-Authorization)."""

    workers: ClassVar[dict[str, Any]] = {}
    debug_on: ClassVar[bool] = True
    identity: ClassVar[str | None] = None
    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append((self.path, dict(self.headers.items())))
        identity = self.headers.get("X-Serverless-Authorization")
        if self.identity is not None and identity != f"Bearer {self.identity}":
            self.reply(403, "<html><h1>Error: Forbidden</h1></html>", "text/html")
            return
        if self.path == "/healthz":
            self.reply(200, {"status": "ok"})
        elif self.path == "/debug/list_workers":
            if not self.debug_on:
                self.reply(404, {"error": "not_found", "detail": "debug endpoints are off"})
            elif self.headers.get("Authorization") != f"Bearer {ADMIN}":
                self.reply(401, {"error": "unauthenticated", "detail": "send Authorization"})
            else:
                self.reply(
                    200, {"connected_workers_count": len(self.workers), "workers": self.workers}
                )
        else:
            self.reply(404, {"error": "not_found"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def rendezvous() -> Iterator[str]:
    FakeRendezvous.debug_on = True
    FakeRendezvous.identity = None
    FakeRendezvous.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRendezvous)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def worker(ip: str | None, port: int | None, connected: bool) -> dict[str, Any]:
    return {
        "stun_reported_udp_ip": ip,
        "stun_reported_udp_port": port,
        "websocket_connected": connected,
    }


def test_verify_passes_a_healthy_deployment(
    bin_dir: Path, fakes: Path, tmp_path: Path, rendezvous: str
) -> None:
    FakeRendezvous.workers = {"w-1": worker("203.0.113.7", 40001, True)}
    data = entries(tmp_path, {"event": "any"})
    result = run(
        "verify",
        "--project",
        "p-1",
        "--url",
        rendezvous,
        path=bin_dir,
        log=fakes,
        FAKE_LOGGING_JSON=str(data),
        ADMIN_TOKEN=ADMIN,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # A local URL: the admin token on /debug only, no Google identity asked for.
    assert [path for path, _ in FakeRendezvous.seen] == ["/healthz", "/debug/list_workers"]
    assert "Authorization" not in FakeRendezvous.seen[0][1]
    assert FakeRendezvous.seen[1][1]["Authorization"] == f"Bearer {ADMIN}"
    assert not [h for _, h in FakeRendezvous.seen if "X-Serverless-Authorization" in h]
    assert not [c for c in calls(fakes) if c[:2] == ["auth", "print-identity-token"]]
    assert ADMIN not in result.stdout + result.stderr
    assert "PASS  worker w-1 has a STUN-reported UDP endpoint: 203.0.113.7:40001" in lines
    assert "PASS  worker w-1 has a live WebSocket: websocket_connected=True" in lines
    assert not [line for line in lines if line.startswith("FAIL")]
    reads = [c for c in calls(fakes) if c[:2] == ["logging", "read"]]
    assert len(reads) == len([line for line in lines if line.startswith("PASS  logs:")]) >= 7


def test_verify_fails_each_broken_item(bin_dir: Path, fakes: Path, rendezvous: str) -> None:
    FakeRendezvous.workers = {"w-2": worker(None, None, False)}
    result = run(
        "verify",
        "--project",
        "p-1",
        "--url",
        rendezvous,
        "--since",
        "30m",
        path=bin_dir,
        log=fakes,
        ADMIN_TOKEN=ADMIN,
    )
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  worker w-2 has a STUN-reported UDP endpoint" in out
    assert "FAIL  worker w-2 has a live WebSocket" in out
    assert (
        "FAIL  logs: worker got a STUN result (public ip:port): stun_result in worker's logs (none in 30m)"
        in out
    )
    assert "WARN  logs: rendezvous recorded a worker's public IP" in out


def test_verify_reads_the_url_from_cloud_run_and_reports_unreachable(
    bin_dir: Path, fakes: Path
) -> None:
    result = run(
        "verify",
        "--project",
        "p-1",
        "--skip-logs",
        "--timeout",
        "2",
        path=bin_dir,
        log=fakes,
        FAKE_URL="http://127.0.0.1:9",
        ADMIN_TOKEN=ADMIN,
    )
    assert result.returncode == 1
    made = gcloud_calls(fakes)
    assert made[0][:4] == ["run", "services", "describe", "rendezvous"]
    # The URL came from Cloud Run: an ID token for that audience.
    assert ["auth", "print-identity-token", "--audiences=http://127.0.0.1:9"] in made
    assert "FAIL  rendezvous reachable at http://127.0.0.1:9" in result.stdout


def test_verify_without_admin_token_is_a_clear_error(
    bin_dir: Path, fakes: Path, rendezvous: str
) -> None:
    result = run("verify", "--project", "p-1", "--url", rendezvous, path=bin_dir, log=fakes)
    assert result.returncode == 2
    assert "ADMIN_TOKEN is not set" in result.stderr and "--skip-debug" in result.stderr
    assert "gcloud secrets versions access" in result.stderr
    assert FakeRendezvous.seen == [] and gcloud_calls(fakes) == []


def test_verify_skip_debug_needs_no_admin_token(
    bin_dir: Path, fakes: Path, tmp_path: Path, rendezvous: str
) -> None:
    data = entries(tmp_path, {"event": "any"})
    result = run(
        "verify",
        "--project",
        "p-1",
        "--url",
        rendezvous,
        "--skip-debug",
        path=bin_dir,
        log=fakes,
        FAKE_LOGGING_JSON=str(data),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [path for path, _ in FakeRendezvous.seen] == ["/healthz"]
    assert "debug/list_workers" not in result.stdout


def test_verify_on_cloud_run_sends_the_identity_and_the_admin_token_apart(
    bin_dir: Path, fakes: Path, rendezvous: str
) -> None:
    FakeRendezvous.identity = "fake-token"
    FakeRendezvous.workers = {"w-1": worker("203.0.113.7", 40001, True)}
    result = run(
        "verify",
        "--project",
        "p-1",
        "--url",
        rendezvous,
        "--id-token",
        "--skip-logs",
        path=bin_dir,
        log=fakes,
        ADMIN_TOKEN=ADMIN,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ["auth", "print-identity-token", f"--audiences={rendezvous}"] in calls(fakes)
    (_, health), (_, debug) = FakeRendezvous.seen
    assert health["X-Serverless-Authorization"] == "Bearer fake-token"
    assert "Authorization" not in health
    assert debug["X-Serverless-Authorization"] == "Bearer fake-token"
    assert debug["Authorization"] == f"Bearer {ADMIN}"


def test_verify_falls_back_to_a_user_accounts_token(
    bin_dir: Path, fakes: Path, rendezvous: str
) -> None:
    FakeRendezvous.identity = "fake-token"
    FakeRendezvous.workers = {"w-1": worker("203.0.113.7", 40001, True)}
    result = run(
        "verify",
        "--project",
        "p-1",
        "--url",
        rendezvous,
        "--id-token",
        "--skip-logs",
        path=bin_dir,
        log=fakes,
        ADMIN_TOKEN=ADMIN,
        FAKE_USER_ACCOUNT="1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tokens = [c for c in calls(fakes) if c[:2] == ["auth", "print-identity-token"]]
    assert tokens == [
        ["auth", "print-identity-token", f"--audiences={rendezvous}"],
        ["auth", "print-identity-token"],
    ]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            "debug_off",
            "FAIL  rendezvous answers GET /debug/list_workers: HTTP 404: debug endpoints are off",
        ),
        (
            "wrong_admin",
            "FAIL  rendezvous answers GET /debug/list_workers: HTTP 401: the rendezvous refused ADMIN_TOKEN",
        ),
        (
            "no_invoker",
            "FAIL  rendezvous answers GET /healthz: HTTP 403: Cloud Run refused the request",
        ),
    ],
)
def test_verify_says_who_refused_and_why(
    bin_dir: Path, fakes: Path, rendezvous: str, setup: str, expected: str
) -> None:
    FakeRendezvous.workers = {}
    admin = ADMIN
    if setup == "debug_off":
        FakeRendezvous.debug_on = False
    elif setup == "wrong_admin":
        admin = "not-the-admin-token-000"
    else:
        FakeRendezvous.identity = "someone-else"
    result = run(
        "verify",
        "--project",
        "p-1",
        "--url",
        rendezvous,
        "--id-token",
        "--skip-logs",
        path=bin_dir,
        log=fakes,
        ADMIN_TOKEN=admin,
    )
    assert result.returncode == 1
    assert expected in result.stdout, result.stdout
    if setup == "debug_off":
        assert "debug_endpoints = true" in result.stdout and "--skip-debug" in result.stdout
    if setup == "no_invoker":
        assert "roles/run.invoker" in result.stdout
    assert admin not in result.stdout + result.stderr


def test_verify_dry_run_shows_the_headers_not_the_tokens(bin_dir: Path, fakes: Path) -> None:
    result = run(
        "verify",
        "--dry-run",
        "--project",
        "p-1",
        "--url",
        "https://rendezvous-xyz.a.run.app",
        "--impersonate-service-account",
        "ops@p-1.iam.gserviceaccount.com",
        path=bin_dir,
        log=fakes,
        ADMIN_TOKEN=ADMIN,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert gcloud_calls(fakes) == []
    assert (
        "+ gcloud auth print-identity-token --audiences=https://rendezvous-xyz.a.run.app "
        "--impersonate-service-account=ops@p-1.iam.gserviceaccount.com"
    ) in out
    assert (
        "+ GET https://rendezvous-xyz.a.run.app/debug/list_workers  "
        "[Authorization: Bearer $ADMIN_TOKEN, X-Serverless-Authorization: Bearer $ID_TOKEN]"
    ) in out
    assert ADMIN not in out


# --- Where the project comes from: one helper, one order, for every script ---

PROJECT_DRY_RUNS = {
    "bootstrap": ["--dry-run", "--no-init"],
    "deploy": ["--dry-run", "--tag", "t1"],
    "logs": ["--dry-run", "stun"],
    "verify": ["--dry-run", "--skip-debug", "--url", "http://127.0.0.1:9"],
}


def project_used(script: str, result: subprocess.CompletedProcess[str]) -> str:
    """The --project=... that a dry run printed (every script passes it to gcloud)."""
    assert result.returncode == 0, result.stdout + result.stderr
    found = {
        word.split("=", 1)[1] for word in result.stdout.split() if word.startswith("--project=")
    }
    assert len(found) == 1, f"{script} printed projects {found}"
    return found.pop()


@pytest.mark.parametrize("script", COMMANDS)
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CLOUDSDK_CORE_PROJECT": "tf-project", "GOOGLE_CLOUD_PROJECT": "other"}, "tf-project"),
        ({"GOOGLE_CLOUD_PROJECT": "tf-project"}, "tf-project"),
        ({"FAKE_PROJECT": "cfg-project"}, "tf-project"),  # terraform output before gcloud config
    ],
)
def test_every_script_finds_the_project_in_the_same_order(
    script: str, env: dict[str, str], expected: str, bin_dir: Path, fakes: Path
) -> None:
    result = run(script, *PROJECT_DRY_RUNS[script], path=bin_dir, log=fakes, **env)
    assert project_used(script, result) == expected


@pytest.mark.parametrize("script", ["bootstrap", "logs", "verify"])
def test_explicit_project_wins_and_gcloud_config_comes_last(
    script: str, bin_dir: Path, fakes: Path
) -> None:
    explicit = run(
        script,
        *PROJECT_DRY_RUNS[script],
        "--project",
        "flag-project",
        path=bin_dir,
        log=fakes,
        CLOUDSDK_CORE_PROJECT="env-project",
    )
    assert project_used(script, explicit) == "flag-project"
    last = run(
        script,
        *PROJECT_DRY_RUNS[script],
        path=bin_dir,
        log=fakes,
        FAKE_PROJECT="cfg-project",
        FAKE_NO_STATE="1",
    )
    assert project_used(script, last) == "cfg-project"


@pytest.mark.parametrize("script", COMMANDS)
def test_every_help_states_the_same_project_order(script: str, bin_dir: Path) -> None:
    text = " ".join(run(script, "--help", path=bin_dir).stdout.split())
    assert (
        "$CLOUDSDK_CORE_PROJECT, else $GOOGLE_CLOUD_PROJECT, else `terraform output project_id`"
        ", else `gcloud config get-value project`"
    ) in text


def test_deploy_refuses_a_project_that_is_not_terraforms(bin_dir: Path, fakes: Path) -> None:
    result = run(
        "deploy", "--tag", "t1", path=bin_dir, log=fakes, CLOUDSDK_CORE_PROJECT="elsewhere"
    )
    assert result.returncode == 2
    assert "project elsewhere is not Terraform's (tf-project)" in result.stderr
    assert not [c for c in calls(fakes) if c[:2] == ["builds", "submit"]]


# --- scripts/bootstrap preflight: effective org policies read through gcloud ---


def org_policies(tmp_path: Path, answers: dict[str, Any]) -> Path:
    """A directory of canned answers: {"v2.run.allowedIngress": {...}, "v1....": {...}}."""
    directory = tmp_path / "org-policies"
    directory.mkdir(exist_ok=True)
    for name, document in answers.items():
        (directory / f"{name}.json").write_text(json.dumps(document))
    return directory


NO_POLICY = {"name": "projects/1/policies/x", "spec": {}}
ALL_CONSTRAINTS = (
    "iam.allowedPolicyMemberDomains",
    "iam.managed.allowedPolicyMembers",
    "run.managed.requireInvokerIam",
    "run.allowedIngress",
    "run.allowedVPCEgress",
    "compute.restrictCloudNATUsage",
    "gcp.resourceLocations",
)


def test_preflight_with_no_policies_passes(bin_dir: Path, fakes: Path, tmp_path: Path) -> None:
    answers = org_policies(tmp_path, {f"v2.{c}": NO_POLICY for c in ALL_CONSTRAINTS})
    result = run(
        "bootstrap",
        "preflight",
        "--project",
        "p-1",
        path=bin_dir,
        log=fakes,
        FAKE_ORG_POLICIES=str(answers),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 will fail, 0 to check by hand, 7 fine" in result.stdout
    described = [c for c in calls(fakes) if c[:2] == ["org-policies", "describe"]]
    assert sorted(c[2] for c in described) == sorted(ALL_CONSTRAINTS)
    assert all({"--effective", "--project=p-1", "--format=json"} <= set(c) for c in described)


def test_preflight_says_what_will_fail_and_falls_back_to_the_v1_api(
    bin_dir: Path, fakes: Path, tmp_path: Path
) -> None:
    answers = org_policies(
        tmp_path,
        {
            # Org Policy API v2 unavailable for these: gcloud resource-manager answers (v1).
            "v1.run.allowedIngress": {
                "constraint": "constraints/run.allowedIngress",
                "listPolicy": {"allowedValues": ["internal"]},
            },
            "v1.gcp.resourceLocations": {
                "constraint": "constraints/gcp.resourceLocations",
                "listPolicy": {"allowedValues": ["in:us-locations"]},
            },
            "v2.run.managed.requireInvokerIam": {
                "name": "projects/1/policies/run.managed.requireInvokerIam",
                "spec": {"rules": [{"enforce": True}]},
            },
        },
    )
    result = run(
        "bootstrap",
        "preflight",
        "--project",
        "p-1",
        "--auth-mode",
        "token",
        path=bin_dir,
        log=fakes,
        FAKE_ORG_POLICIES=str(answers),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "FAIL  run.allowedIngress: Cloud Run will refuse the rendezvous" in out
    assert 'FAIL  run.managed.requireInvokerIam: auth_mode = "token"' in out
    assert "OK    gcp.resourceLocations: allows us-central1" in out
    # Unreadable (no answer from either API): a person must look, with gcloud's reason.
    assert "CHECK compute.restrictCloudNATUsage: could not read the effective policy" in out
    assert "PERMISSION_DENIED" in out
    assert "2 will fail" in out
    made = calls(fakes)
    # A managed constraint exists only in v2: no v1 fallback for it.
    assert not [
        c for c in made if c[:1] == ["resource-manager"] and "run.managed.requireInvokerIam" in c
    ]
    assert [
        c
        for c in made
        if c[:4] == ["resource-manager", "org-policies", "describe", "run.allowedIngress"]
    ]


def test_preflight_dry_run_and_bad_options(bin_dir: Path, fakes: Path) -> None:
    result = run("bootstrap", "preflight", "--dry-run", "--project", "p-1", path=bin_dir, log=fakes)
    assert result.returncode == 0, result.stderr
    assert (
        "+ gcloud org-policies describe run.allowedVPCEgress --effective --project=p-1"
        in result.stdout
    )
    assert calls(fakes) == []
    bad = run("bootstrap", "preflight", "--auth-mode", "none", "--project", "p-1", path=bin_dir)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    helped = run("bootstrap", "preflight", "--help", path=bin_dir)
    assert helped.returncode == 0 and "--shared-registry" in helped.stdout


def test_verify_and_logs_take_region_and_service_names_from_terraform(
    bin_dir: Path, fakes: Path
) -> None:
    names = {"FAKE_RENDEZVOUS_NAME": "hp-rv", "FAKE_WORKER_NAME": "hp-w"}
    verify = run("verify", "--dry-run", "--skip-debug", path=bin_dir, log=fakes, **names)
    assert verify.returncode == 0, verify.stderr
    assert (
        "+ gcloud run services describe hp-rv --project=tf-project --region=europe-west4"
        in verify.stdout
    )
    assert 'resource.labels.service_name="hp-w"' in verify.stdout
    logs = run("logs", "--dry-run", "stun", path=bin_dir, log=fakes, **names)
    assert logs.returncode == 0, logs.stderr
    assert 'resource.labels.service_name="hp-w"' in logs.stdout
    # A flag still wins over Terraform.
    flagged = run(
        "verify",
        "--dry-run",
        "--skip-debug",
        "--region",
        "asia-east1",
        "--rendezvous-service",
        "mine",
        path=bin_dir,
        log=fakes,
        **names,
    )
    assert (
        "+ gcloud run services describe mine --project=tf-project --region=asia-east1"
        in flagged.stdout
    )


def test_logs_and_verify_read_a_worker_pools_entries(bin_dir: Path, fakes: Path) -> None:
    """On a worker pool (Terraform's default), the worker's entries are under the pool's
    resource type and name label; the rendezvous's stay under its service's."""
    pool = {"FAKE_WORKER_HOST": "worker_pool", "FAKE_WORKER_NAME": "hp-w"}
    stun = run("logs", "--dry-run", "stun", path=bin_dir, log=fakes, **pool)
    assert stun.returncode == 0, stun.stderr
    assert (
        'resource.type="cloud_run_worker_pool" AND resource.labels.worker_pool_name="hp-w" AND '
        'jsonPayload.event=("stun_request" OR "stun_result" OR "stun_failed")'
    ) in stun.stdout
    both = run("logs", "--dry-run", "worker", "abc-1", path=bin_dir, log=fakes, **pool)
    assert (
        '((resource.type="cloud_run_revision" AND resource.labels.service_name="rendezvous") OR '
        '(resource.type="cloud_run_worker_pool" AND resource.labels.worker_pool_name="hp-w")) '
        'AND jsonPayload.worker_id="abc-1"'
    ) in both.stdout
    verify = run("verify", "--dry-run", "--skip-debug", path=bin_dir, log=fakes, **pool)
    assert (
        'resource.labels.worker_pool_name="hp-w" AND jsonPayload.event="stun_result"'
        in verify.stdout
    )
    assert (
        'resource.labels.service_name="rendezvous" AND jsonPayload.event="worker_connected"'
        in verify.stdout
    )
    # Without Terraform state the default is Terraform's default, the worker pool; a flag wins.
    bare = run("logs", "--dry-run", "--project", "p", "stun", path=bin_dir, FAKE_NO_STATE="1")
    assert 'resource.type="cloud_run_worker_pool"' in bare.stdout, bare.stderr
    flagged = run(
        "logs", "--dry-run", "--worker-host", "service", "stun", path=bin_dir, log=fakes, **pool
    )
    assert (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="hp-w"'
        in flagged.stdout
    )
    bad = run("logs", "--dry-run", "--worker-host", "vm", "stun", path=bin_dir, log=fakes)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
