"""Free loopback ports for servers the tests start."""

from __future__ import annotations

import socket

__all__ = ["free_tcp_port", "free_udp_port"]


def _free_port(kind: socket.SocketKind, host: str) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def free_tcp_port(host: str = "127.0.0.1") -> int:
    return _free_port(socket.SOCK_STREAM, host)


def free_udp_port(host: str = "127.0.0.1") -> int:
    return _free_port(socket.SOCK_DGRAM, host)
