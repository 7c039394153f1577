"""Shared plumbing of the operator scripts: prerequisites, gcloud, and the project.

Every script (bootstrap, deploy, logs, verify) finds the project the same way, through
resolve_project: the Python ones import it, the shell ones run
`python3 scripts/holepunch_cli.py project [EXPLICIT]`.

Standard library only: the scripts run with any python3.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from holepunch_logs_queries import WORKER_HOSTS

__all__ = [
    "PROJECT_ENV_VARS",
    "PROJECT_ORDER",
    "TF_DIR",
    "Gcloud",
    "add_service_arguments",
    "die",
    "from_terraform",
    "resolve_project",
    "resolve_services",
    "terraform_output",
    "terraform_outputs",
]

# Read in this order when --project is not given, before Terraform's and gcloud's.
PROJECT_ENV_VARS = ("CLOUDSDK_CORE_PROJECT", "GOOGLE_CLOUD_PROJECT")
# The order, as each script's --help states it.
PROJECT_ORDER = (
    "--project, else $CLOUDSDK_CORE_PROJECT, else $GOOGLE_CLOUD_PROJECT, else "
    "`terraform output project_id`, else `gcloud config get-value project`"
)
TF_DIR = Path(__file__).resolve().parent.parent / "infra" / "terraform"


# The name errors are reported under; the shell scripts pass theirs (`project --prog NAME`).
_prog: str | None = None


def die(message: str, code: int = 2) -> NoReturn:
    prog = _prog or os.path.basename(sys.argv[0])
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


class Gcloud:
    """Runs gcloud, or with dry_run prints each command instead of running it."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.path = shutil.which("gcloud")
        if self.path is None and not dry_run:
            die(
                "gcloud not found on PATH: install the Google Cloud CLI "
                "(https://cloud.google.com/sdk/docs/install) and run `gcloud auth login`"
            )

    def show(self, args: Sequence[str]) -> None:
        print("+ " + shlex.join(["gcloud", *args]))

    def run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run gcloud and return the result, whatever its exit status."""
        if self.path is None:
            die("gcloud not found on PATH")
        return subprocess.run([self.path, *args], capture_output=True, text=True, check=False)

    def output(self, args: Sequence[str]) -> str:
        """Run gcloud and return its stdout; exit with its message when it fails."""
        result = self.run(args)
        if result.returncode != 0:
            die(f"`{shlex.join(['gcloud', *args])}` failed: {result.stderr.strip()}", code=1)
        return result.stdout

    def config_project(self) -> str | None:
        if self.path is None:
            return None
        result = subprocess.run(
            [self.path, "config", "get-value", "project"],
            capture_output=True,
            text=True,
            check=False,
        )
        value = result.stdout.strip()
        return value if result.returncode == 0 and value and value != "(unset)" else None


@functools.cache
def terraform_outputs() -> dict[str, Any]:
    """Every `terraform output -json` value of infra/terraform; {} without terraform or state."""
    terraform = shutil.which("terraform")
    if terraform is None:
        return {}
    try:
        result = subprocess.run(
            [terraform, f"-chdir={TF_DIR}", "output", "-json"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        outputs = json.loads(result.stdout) if result.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return {}
    if not isinstance(outputs, dict):
        return {}
    return {
        name: entry["value"]
        for name, entry in outputs.items()
        if isinstance(entry, dict) and "value" in entry
    }


def terraform_output(name: str) -> str | None:
    """One string output of infra/terraform, or None (no terraform, no state, no such output)."""
    value = terraform_outputs().get(name)
    return value if isinstance(value, str) and value else None


def from_terraform(explicit: str | None, output: str, fallback: str) -> str:
    """A setting: the flag, else Terraform's output of that name, else the fallback."""
    return explicit or terraform_output(output) or fallback


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """--rendezvous-service, --worker-service and --worker-host (logs, verify)."""
    parser.add_argument(
        "--rendezvous-service",
        help="Cloud Run name of the rendezvous (default: terraform output "
        "rendezvous_service_name, else rendezvous)",
    )
    parser.add_argument(
        "--worker-service",
        help="Cloud Run name of the worker's pool or service (default: terraform output "
        "worker_service_name, else worker)",
    )
    parser.add_argument(
        "--worker-host",
        choices=WORKER_HOSTS,
        help="what runs the workers, which decides where their logs are (default: terraform "
        "output worker_host, else worker_pool)",
    )


def resolve_services(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill in what add_service_arguments' flags left unset, from Terraform's outputs."""
    args.rendezvous_service = from_terraform(
        args.rendezvous_service, "rendezvous_service_name", "rendezvous"
    )
    args.worker_service = from_terraform(args.worker_service, "worker_service_name", "worker")
    args.worker_host = from_terraform(args.worker_host, "worker_host", "worker_pool")
    if args.worker_host not in WORKER_HOSTS:
        parser.error(f"terraform output worker_host is {args.worker_host!r}: pass --worker-host")


def resolve_project(explicit: str | None, gcloud: Gcloud) -> str:
    """The project, in PROJECT_ORDER; else a clear error."""
    if explicit:
        return explicit
    for name in PROJECT_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    from_terraform = terraform_output("project_id")
    if from_terraform:
        return from_terraform
    configured = gcloud.config_project()
    if configured:
        return configured
    die(
        "no Google Cloud project: pass --project PROJECT_ID, set CLOUDSDK_CORE_PROJECT, "
        "or run `gcloud config set project PROJECT_ID`"
    )


def main(argv: list[str]) -> int:
    """`holepunch_cli.py project [--prog NAME] [EXPLICIT]`: print the project (for the shell
    scripts), or exit 2 with the error under NAME."""
    global _prog
    args = list(argv)
    if args[:1] != ["project"]:
        die("usage: holepunch_cli.py project [--prog NAME] [EXPLICIT_PROJECT]")
    args.pop(0)
    if args[:1] == ["--prog"] and len(args) >= 2:
        _prog = args[1]
        del args[:2]
    if len(args) > 1:
        die("usage: holepunch_cli.py project [--prog NAME] [EXPLICIT_PROJECT]")
    print(resolve_project(args[0] if args else None, Gcloud(dry_run=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
