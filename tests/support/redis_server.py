"""The `redis_server` fixture: a real redis-server (holepunch_devtools.redis_server) per test.

Skipped (or failed, under HOLEPUNCH_STRICT_TESTS=1) when the Debian package is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from holepunch_devtools.redis_server import RedisServer

from tests.support.strict import require_executable

__all__ = ["RedisServer", "redis_server"]


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = require_executable("redis-server", "install the Debian package redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
