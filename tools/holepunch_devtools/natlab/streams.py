"""asyncio TCP streams inside a lab namespace: a client connection and a server whose
sockets were made there (`sockets.netns_socket`) and are then served by this process's
event loop, so a bench or a test talks to a worker's loopback without a process of its own
in the namespace."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from holepunch_devtools.natlab.sockets import netns_socket

__all__ = ["open_connection_in", "start_server_in"]

ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def open_connection_in(
    namespace: str, host: str, port: int, timeout: float = 10.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = await asyncio.to_thread(netns_socket, namespace, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def start_server_in(
    namespace: str, host: str, port: int, handler: ClientHandler
) -> asyncio.Server:
    """A TCP server on `host:port` of `namespace` (port 0: any; read it from the server)."""
    sock = await asyncio.to_thread(netns_socket, namespace, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        sock.setblocking(False)
        return await asyncio.start_server(handler, sock=sock)
    except BaseException:
        sock.close()
        raise
