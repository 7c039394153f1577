"""tests/support/strict.py as `make test` runs it (pytest-xdist workers, `-rs`): a missing
prerequisite skips with its reason, and fails under HOLEPUNCH_STRICT_TESTS=1, as in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

NEEDS_A_MISSING_TOOL = """
from tests.support.strict import require_executable

def test_needs_a_tool_nobody_has() -> None:
    require_executable("holepunch-no-such-tool", "install the imaginary package")
"""


def run_pytest_with_two_workers(tmp_path: Path, strict: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_prerequisite.py").write_text(NEEDS_A_MISSING_TOOL)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.pop("HOLEPUNCH_STRICT_TESTS", None)
    env["PYTHONPATH"] = str(REPO)
    if strict:
        env["HOLEPUNCH_STRICT_TESTS"] = "1"
    command = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml")]
    return subprocess.run(
        [*command, "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_a_missing_prerequisite_skips_with_its_reason_or_fails_in_ci(
    tmp_path: Path, strict: bool
) -> None:
    result = run_pytest_with_two_workers(tmp_path, strict)
    reason = "holepunch-no-such-tool not found: install the imaginary package"
    if strict:
        assert result.returncode == 1, result.stdout
        assert "1 failed" in result.stdout
        assert "HOLEPUNCH_STRICT_TESTS=1 forbids skipping" in result.stdout
    else:
        assert result.returncode == 0, result.stdout
        assert "1 skipped" in result.stdout
        # -rs (addopts) prints the reason in the summary.
        assert reason in next(line for line in result.stdout.splitlines() if "SKIPPED" in line)
