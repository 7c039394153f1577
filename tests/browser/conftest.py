"""A real headless Chromium (Debian's `chromium`) driven by Playwright for Python.

Playwright's own browser download cannot run here, so the system browser is launched by
path. Without it, or without playwright, the tests skip with the reason (fail under
HOLEPUNCH_STRICT_TESTS=1). Screenshots go to build/screenshots/ (gitignored): the
artifacts of the last run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.strict import skip_or_fail

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def chromium_executable() -> str:
    path = os.environ.get("HOLEPUNCH_CHROMIUM") or shutil.which("chromium")
    if path is None or not os.access(path, os.X_OK):
        skip_or_fail(
            f"chromium not found ({path or 'not on PATH'}): apt-get install chromium "
            "(or set HOLEPUNCH_CHROMIUM to a Chromium binary)"
        )
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = chromium_executable()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        skip_or_fail("playwright is not installed: pip install -e '.[dev]'")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """Where this test keeps its screenshots."""
    folder = SCREENSHOTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
