"""A real `redis-server` (Debian package `redis-server`) on a free loopback port.

Used by the shared-registry tests, `make bench-cluster` and `make soak`. No persistence
(`--save '' --appendonly no`), so a restart loses everything, as a Memorystore failover
without persistence would. Ready when it answers PING: probed with short timeouts under a
deadline, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from holepunch_devtools.bench import free_port

__all__ = ["RedisServer", "redis_info"]

START_TIMEOUT_SEC = 10.0


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_info(port: int, section: str = "everything") -> dict[str, str]:
    """`INFO section` as a flat dict (inline protocol, no client library)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"INFO {section}\r\n".encode())
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            header, _, rest = data.partition(b"\r\n")
            if header.startswith(b"$") and len(rest) >= int(header[1:]):
                break
    text = data.partition(b"\r\n")[2].decode()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[key] = value
    return fields


class RedisServer:
    """One redis-server process; `stop()` and `start()` again keep the port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("redis-server is not running")
        return self.process.pid

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
