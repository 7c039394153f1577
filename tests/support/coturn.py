"""coturn (`turnserver`, Debian package `coturn`) as a real STUN server for tests.

Started STUN-only on 127.0.0.1 and 127.0.0.2, on a port whose neighbour is free too
(coturn also binds port + 1 for RFC 5780). Ready when it answers a Binding request:
probed with short receive timeouts, never a fixed sleep. Killed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice import stun

from tests.support.strict import require_executable

__all__ = ["CoturnServer", "coturn_server"]

LISTEN_IPS = ("127.0.0.1", "127.0.0.2")
START_TIMEOUT_SEC = 10.0


@dataclass(frozen=True)
class CoturnServer:
    port: int
    log_path: Path

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(ip, self.port) for ip in LISTEN_IPS]


def _port_pair_is_free(port: int) -> bool:
    for ip in LISTEN_IPS:
        for candidate in (port, port + 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind((ip, candidate))
                except OSError:
                    return False
    return True


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port < 65535 and _port_pair_is_free(port):
            return port
    raise RuntimeError("no free UDP port pair for coturn")


def _answers(address: tuple[str, int]) -> bool:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.1)
        probe.bind(("127.0.0.1", 0))
        probe.sendto(bytes(request), address)
        try:
            data, _ = probe.recvfrom(2048)
        except TimeoutError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@pytest.fixture(scope="module")
def coturn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoturnServer]:
    binary = require_executable("turnserver", "install the Debian package coturn")
    workdir = tmp_path_factory.mktemp("coturn")
    port = _free_port_pair()
    log_path = workdir / "turnserver.log"
    command = [
        binary,
        "-n",  # no configuration file
        "--stun-only",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        *(f"--listening-ip={ip}" for ip in LISTEN_IPS),
        f"--listening-port={port}",
        "--log-file=stdout",
        "--simple-log",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--db={workdir / 'turndb'}",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = CoturnServer(port=port, log_path=log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SEC
        while not all(_answers(address) for address in server.addresses):
            if process.poll() is not None:
                raise RuntimeError(f"turnserver exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"turnserver not answering: {log_path.read_text()[-2000:]}")
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
