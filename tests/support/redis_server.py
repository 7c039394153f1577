"""A real `redis-server` (Debian package `redis-server`) for the shared-registry tests.

Started on a free loopback port with no persistence (`--save '' --appendonly no`), so a
restart loses everything, as a Memorystore failover without persistence would. Ready when
it answers PING: probed with short timeouts, never a fixed sleep. Killed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_tcp_port
from tests.support.strict import require_executable

__all__ = ["RedisServer", "redis_server"]

START_TIMEOUT_SEC = 10.0


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process; `stop()` and `start()` again keep the port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_tcp_port()
        self.log_path = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.log_path),
        ]
        self.process = subprocess.Popen(command, cwd=self.workdir)
        deadline = time.monotonic() + START_TIMEOUT_SEC
        while not _pings(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server not answering: {self.log_path.read_text()}")
            time.sleep(0.02)  # polling PING, bounded by the deadline

    def stop(self) -> None:
        """SIGKILL: the data is gone (no persistence), like a lost Memorystore node."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = require_executable("redis-server", "install the Debian package redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
