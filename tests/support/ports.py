"""Free loopback ports for servers the tests start, never the same one for two xdist workers.

A port found by binding port 0 is free only until the probe closes it: another process
binding port 0 may be handed it before our server starts, and under `pytest -n` several
workers (and the benches' thousand client connections) draw from that same ephemeral range
at once. So these ports come from below the kernel's ephemeral range, where it never picks a
port by itself, out of a slice of their own for each xdist worker; a process never hands out
a port twice, and each is checked free by binding it. A random starting point in the slice
keeps two test runs sharing a machine apart.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["free_tcp_port", "free_udp_port", "port_slice"]

# The ports below the ephemeral range that the tests may use.
POOL_SIZE = 10_000
DEFAULT_EPHEMERAL_START = 32768  # Linux's default net.ipv4.ip_local_port_range starts here


def _ephemeral_start() -> int:
    try:
        low, _high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low)
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_START


def port_slice(worker: str | None, worker_count: int, ephemeral_start: int) -> range:
    """The ports xdist worker `worker` (e.g. "gw1"; None outside xdist) may hand out."""
    pool_start = max(1024, ephemeral_start - POOL_SIZE)
    pool_size = ephemeral_start - pool_start
    if worker is None:
        return range(pool_start, ephemeral_start)
    index = int(worker.removeprefix("gw"))
    size = pool_size // max(worker_count, index + 1)
    return range(pool_start + index * size, pool_start + (index + 1) * size)


def _candidates() -> Iterator[int]:
    ports = port_slice(
        os.environ.get("PYTEST_XDIST_WORKER"),
        int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
        _ephemeral_start(),
    )
    start = random.randrange(len(ports))
    for offset in itertools.count():
        if offset == len(ports):
            raise RuntimeError(f"no free loopback port left in {ports}")
        yield ports[(start + offset) % len(ports)]


_next_candidate = _candidates()


def _free_port(kind: socket.SocketKind, host: str) -> int:
    for port in _next_candidate:
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue  # in use by someone else
            return port
    raise AssertionError("unreachable: _candidates raises when it runs out")


def free_tcp_port(host: str = "127.0.0.1") -> int:
    return _free_port(socket.SOCK_STREAM, host)


def free_udp_port(host: str = "127.0.0.1") -> int:
    return _free_port(socket.SOCK_DGRAM, host)
