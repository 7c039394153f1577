"""Skip a test for a missing prerequisite, or fail it when CI demands everything run.

`.ci/run` sets HOLEPUNCH_STRICT_TESTS=1: there, a missing tool, root or netns is a
failure, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["STRICT", "require_executable", "require_root", "skip_or_fail"]

STRICT = os.environ.get("HOLEPUNCH_STRICT_TESTS") == "1"


def skip_or_fail(reason: str) -> NoReturn:
    if STRICT:
        pytest.fail(f"{reason} (HOLEPUNCH_STRICT_TESTS=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def require_executable(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} not found: {hint}")
    return path


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        skip_or_fail(f"needs root: {why}")
