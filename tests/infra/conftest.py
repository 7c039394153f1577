"""Fixtures of the offline infrastructure checks: parsed Terraform, tool lookup, one checkov run.

Missing tools skip, or fail under HOLEPUNCH_STRICT_TESTS=1 (CI), through
tests/support/strict.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.strict import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "infra" / "terraform"
SCRIPTS = REPO / "scripts"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

_META_KEYS = {"__is_block__", "__comments__", "__inline_comments__"}


def unquote(value: Any) -> Any:
    """python-hcl2 8.x keeps quotes on labels and string literals: drop them, recursively."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k not in _META_KEYS}
    return value


def require_tool(name: str, hint: str) -> str:
    """The path of a tool on PATH or next to the running Python; skip (or fail in CI) without it."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} not found: {hint}")
    return found


def require_module(name: str, hint: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        skip_or_fail(f"Python module {name} not importable: {hint}")


@dataclass
class Terraform:
    """Every top-level block of infra/terraform/*.tf, quotes removed, by kind and name."""

    files: dict[str, dict[str, Any]]

    def _blocks(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, content in self.files.items():
            for block in content.get(kind, []):
                yield name, block

    def resources(self, rtype: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for _, block in self._blocks("resource"):
            found.update(block.get(rtype, {}))
        return found

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        resources = self.resources(rtype)
        assert name in resources, f"{rtype}.{name} not declared (have {sorted(resources)})"
        return resources[name]

    def resource_file(self, rtype: str, name: str) -> str:
        for file, block in self._blocks("resource"):
            if name in block.get(rtype, {}):
                return file
        raise AssertionError(f"{rtype}.{name} not declared")

    def blocks(self, kind: str) -> list[dict[str, Any]]:
        """Every unlabelled top-level block of KIND (such as `moved`)."""
        return [block for _, block in self._blocks(kind)]

    def module(self, name: str) -> dict[str, Any]:
        calls: dict[str, dict[str, Any]] = {}
        for _, block in self._blocks("module"):
            calls.update(block)
        assert name in calls, f"module.{name} not declared (have {sorted(calls)})"
        return calls[name]

    @property
    def variables(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for _, block in self._blocks("variable"):
            found.update(block)
        return found

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for _, block in self._blocks("output"):
            found.update(block)
        return found

    @property
    def locals(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for _, block in self._blocks("locals"):
            found.update(block)
        return found

    def default(self, variable: str) -> Any:
        return self.variables[variable]["default"]


def load_terraform(directory: Path) -> Terraform:
    hcl2 = require_module("hcl2", "install the dev extras (python-hcl2>=8,<9)")
    files = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            files[path.name] = unquote(hcl2.load(handle))
    return Terraform(files)


@pytest.fixture(scope="session")
def tf() -> Terraform:
    """The root module (infra/terraform/*.tf)."""
    return load_terraform(TF_DIR)


@pytest.fixture(scope="session")
def module_tf() -> Terraform:
    """modules/cloud-run-service."""
    return load_terraform(TF_DIR / "modules" / "cloud-run-service")


@pytest.fixture(scope="session")
def checkov_report() -> dict[str, Any]:
    """One checkov run over infra/terraform per session (it takes seconds)."""
    checkov = str(CHECKOV) if CHECKOV.exists() else shutil.which("checkov")
    if checkov is None:
        skip_or_fail("checkov not found: `make test` creates .venv-checkov with it")
    result = subprocess.run(
        [checkov, "-d", str(TF_DIR), "--framework", "terraform", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.stdout.strip(), f"checkov printed nothing: {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    assert isinstance(report, dict), "checkov returned several reports: expected one framework"
    return report
