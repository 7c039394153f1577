"""Run the atheris harness for the fuzz profile's number of inputs, when atheris is installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.profiles import selected_profile

HARNESS = Path(__file__).with_name("atheris_protocol.py")


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris is not installed (optional)"
)
def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    runs = selected_profile().atheris_runs
    result = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={runs}", "-max_len=2048", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {runs} runs" in result.stderr
