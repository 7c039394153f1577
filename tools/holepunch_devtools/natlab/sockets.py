"""Sockets made inside a lab namespace (setns(2) on a throwaway thread), and the UDP and
HTTP exchanges the lab and its tests make through them."""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from holepunch_devtools.natlab.errors import LabError

__all__ = ["http_get_json", "http_request_json", "netns_socket", "udp_exchange"]

_CLONE_NEWNET = 0x40000000
_T = TypeVar("_T")


def _in_namespace(namespace: str, action: Callable[[], _T]) -> _T:
    """Run `action` on a fresh thread that has joined the namespace (setns(2) changes only
    the calling thread), and return its result. Sockets keep the namespace they were made
    in, so a socket made here is used from any thread afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            with open(f"/run/netns/{namespace}", "rb") as handle:
                if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"setns({namespace}): {os.strerror(code)}")
            outcome.append(action())
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=target, name=f"netns-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def netns_socket(
    namespace: str,
    kind: socket.SocketKind = socket.SOCK_DGRAM,
    family: socket.AddressFamily = socket.AF_INET,
    proto: int = 0,
) -> socket.socket:
    """A socket living in `namespace` (IPv4 by default; AF_PACKET for captures)."""
    return _in_namespace(namespace, lambda: socket.socket(family, kind, proto))


def udp_exchange(
    sock: socket.socket,
    target: tuple[str, int],
    payload: bytes,
    accept: Callable[[bytes], bool],
    *,
    attempts: int = 5,
    wait_sec: float = 0.5,
) -> bytes | None:
    """Send `payload` to `target` up to `attempts` times, waiting `wait_sec` after each for
    a datagram from `target` that `accept`s; return it, or None when none came."""
    for _ in range(attempts):
        sock.sendto(payload, target)
        deadline = time.monotonic() + wait_sec
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data, source = sock.recvfrom(4096)
            if source == target and accept(data):
                return data
    return None


class _NamespaceHTTPConnection(http.client.HTTPConnection):
    def __init__(self, namespace: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._namespace = namespace

    def connect(self) -> None:
        sock = netns_socket(self._namespace, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def http_request_json(
    namespace: str,
    host: str,
    port: int,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """`method` http://host:port/path from inside `namespace`, with `body` as JSON when
    given: (status, parsed JSON body, or None when the body is not JSON)."""
    connection = _NamespaceHTTPConnection(namespace, host, port, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {} if payload is None else {"Content-Type": "application/json"}
        if payload is None and method != "GET":
            headers["Content-Length"] = "0"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return response.status, parsed
    finally:
        connection.close()


def http_get_json(namespace: str, host: str, port: int, path: str, timeout: float = 5.0) -> Any:
    """GET http://host:port/path from inside `namespace` and parse the JSON body."""
    status, body = http_request_json(namespace, host, port, "GET", path, timeout=timeout)
    if status != 200:
        raise LabError(f"GET {path} answered {status}: {str(body)[:200]}")
    return body
