"""Shared plumbing of the Python operator scripts (logs, verify): prerequisites, project, gcloud.

Standard library only: the scripts run with any python3.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["PROJECT_ENV_VARS", "Gcloud", "die", "resolve_project"]

# Read in this order when --project is not given, before `gcloud config get-value project`.
PROJECT_ENV_VARS = ("CLOUDSDK_CORE_PROJECT", "GOOGLE_CLOUD_PROJECT")


def die(message: str, code: int = 2) -> NoReturn:
    prog = os.path.basename(sys.argv[0])
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


def resolve_project(explicit: str | None, gcloud: Gcloud) -> str:
    """--project, else the environment, else gcloud's configured project; else a clear error."""
    if explicit:
        return explicit
    for name in PROJECT_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    configured = gcloud.config_project()
    if configured:
        return configured
    die(
        "no Google Cloud project: pass --project PROJECT_ID, set CLOUDSDK_CORE_PROJECT, "
        "or run `gcloud config set project PROJECT_ID`"
    )
