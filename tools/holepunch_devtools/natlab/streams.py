"""asyncio sockets inside a lab namespace: a TCP client connection, a TCP server and a UDP
echo whose sockets were made there (`sockets.netns_socket`) and are then served by this process's
event loop, so a bench or a test talks to a worker's loopback without a process of its own
in the namespace."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

from holepunch_devtools.natlab.sockets import netns_socket

__all__ = ["open_connection_in", "start_server_in", "start_udp_echo_in"]

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


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's UDP transport is not a DatagramTransport subclass on 3.11, only in shape.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.transport.sendto(b"echo:" + data, addr)


async def start_udp_echo_in(namespace: str, host: str, port: int) -> asyncio.DatagramTransport:
    """A UDP socket on `host:port` of `namespace` answering each datagram with `echo:` and
    the datagram, to its sender."""
    sock = await asyncio.to_thread(netns_socket, namespace, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        sock.setblocking(False)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(_Echo, sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport
