"""A DataPlane for tests with no QUIC underneath: workers in one process reach each other
through real loopback sockets.

A stream to port P of peer B is a real TCP connection to 127.0.0.1:P (or, for a port B
serves with `serve_port`, a real socket pair handed to its handler), refused as the real
data plane would: an unknown peer with `ConnectRefused("peer_not_found")`, a port B does
not expose with `StreamRefused("port_not_exposed")`, a port nothing listens on with
`StreamRefused("connect_failed")`. Datagrams go to the peer's handler on the next loop
turn, only over a connection (`connect` first, or the peer connected to us), as QUIC's
would. `refuse_connect` makes `connect` fail with a chosen error, `hold_connect` makes it
wait (for timeouts), so the proxy's answers to every refusal are tested for real.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from holepunch_worker.dataplane.interface import (
    DEFAULT_CONNECT_TIMEOUT_SEC,
    ConnectRefused,
    DatagramChannel,
    DatagramHandler,
    DataPlaneError,
    IncomingStream,
    PeerUnavailable,
    StreamHandler,
    StreamRefused,
)

__all__ = ["LoopbackConnection", "LoopbackDataPlane", "LoopbackNetwork"]

MAX_DATAGRAM_PAYLOAD = 1100


class LoopbackNetwork:
    """The workers that can reach each other."""

    def __init__(self) -> None:
        self.planes: dict[str, LoopbackDataPlane] = {}

    def add(
        self, worker_id: str, *, exposed_ports: frozenset[int] | None = None
    ) -> LoopbackDataPlane:
        """A worker; `exposed_ports` None exposes every port (EXPOSE_PORTS is A1's)."""
        plane = LoopbackDataPlane(worker_id, self, exposed_ports=exposed_ports)
        self.planes[worker_id] = plane
        return plane


class LoopbackConnection:
    def __init__(self, local: LoopbackDataPlane, peer: LoopbackDataPlane) -> None:
        self._local = local
        self._peer = peer
        self._closed = False
        self.streams_opened = 0
        self.datagrams_sent = 0
        self.datagrams_received = 0

    @property
    def peer_id(self) -> str:
        return self._peer.worker_id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def max_datagram_payload(self) -> int:
        return MAX_DATAGRAM_PAYLOAD

    async def open_stream(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._closed:
            raise PeerUnavailable("connection_lost", f"the connection to {self.peer_id} is closed")
        self.streams_opened += 1
        return await self._peer.accept_stream(self._local.worker_id, port)

    def send_datagram(self, channel: DatagramChannel, payload: bytes) -> None:
        if self._closed:
            raise PeerUnavailable("connection_lost", f"the connection to {self.peer_id} is closed")
        if len(payload) > MAX_DATAGRAM_PAYLOAD:
            raise ValueError(f"datagram of {len(payload)} bytes, over {MAX_DATAGRAM_PAYLOAD}")
        self.datagrams_sent += 1
        asyncio.get_running_loop().call_soon(
            self._peer.deliver_datagram, self._local.worker_id, channel, payload
        )

    def status(self) -> dict[str, Any]:
        return {
            "path": "loopback",
            "streams_opened": self.streams_opened,
            "datagrams_sent": self.datagrams_sent,
            "datagrams_received": self.datagrams_received,
            "authenticated": True,
        }

    def close(self) -> None:
        self._closed = True

    async def wait_closed(self) -> None:
        return None


class LoopbackDataPlane:
    def __init__(
        self,
        worker_id: str,
        network: LoopbackNetwork,
        *,
        exposed_ports: frozenset[int] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.network = network
        self.exposed_ports = exposed_ports
        self.refusals: dict[str, DataPlaneError] = {}
        self.holds: dict[str, asyncio.Event] = {}
        self.connect_calls: list[str] = []
        self._connections: dict[str, LoopbackConnection] = {}
        self._served: dict[int, StreamHandler] = {}
        self._datagram_handlers: dict[DatagramChannel, DatagramHandler] = {}
        self._handler_tasks: set[asyncio.Task[None]] = set()

    def refuse_connect(self, peer_id: str, error: DataPlaneError) -> None:
        self.refusals[peer_id] = error

    def hold_connect(self, peer_id: str) -> asyncio.Event:
        """`connect(peer_id)` waits until the returned event is set (or times out)."""
        self.holds[peer_id] = asyncio.Event()
        return self.holds[peer_id]

    # ------------------------------------------------------------------ DataPlane

    async def connect(
        self, peer_id: str, *, timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC
    ) -> LoopbackConnection:
        self.connect_calls.append(peer_id)
        hold = self.holds.get(peer_id)
        if hold is not None:
            try:
                async with asyncio.timeout(timeout):
                    await hold.wait()
            except TimeoutError:
                raise PeerUnavailable("timeout", f"no connection within {timeout:g} s") from None
        refusal = self.refusals.get(peer_id)
        if refusal is not None:
            raise refusal
        peer = self.network.planes.get(peer_id)
        if peer is None:
            raise ConnectRefused("peer_not_found", f"{peer_id} is not registered")
        return self._connection_to(peer)

    async def open_stream(
        self, peer_id: str, port: int, *, timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        connection = await self.connect(peer_id, timeout=timeout)
        return await connection.open_stream(port)

    def serve_port(self, port: int, handler: StreamHandler) -> None:
        self._served[port] = handler

    def on_datagram(self, channel: DatagramChannel, handler: DatagramHandler) -> None:
        self._datagram_handlers[channel] = handler

    def send_datagram(self, peer_id: str, channel: DatagramChannel, payload: bytes) -> None:
        connection = self._connections.get(peer_id)
        if connection is None or connection.closed:
            raise PeerUnavailable("not_connected", f"no connection to {peer_id}")
        connection.send_datagram(channel, payload)

    # ------------------------------------------------------------------ the peer's side

    def _connection_to(self, peer: LoopbackDataPlane) -> LoopbackConnection:
        connection = self._connections.get(peer.worker_id)
        if connection is None or connection.closed:
            connection = self._connections[peer.worker_id] = LoopbackConnection(self, peer)
        return connection

    async def accept_stream(
        self, peer_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream `peer_id` opens to `port` here."""
        handler = self._served.get(port)
        if handler is not None:
            ours, theirs = socket.socketpair()
            reader, writer = await asyncio.open_connection(sock=ours)
            task = asyncio.create_task(self._serve(handler, peer_id, port, theirs))
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_tasks.discard)
            return reader, writer
        if self.exposed_ports is not None and port not in self.exposed_ports:
            raise StreamRefused("port_not_exposed", f"port {port} is not in EXPOSE_PORTS")
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError as error:
            raise StreamRefused("connect_failed", f"127.0.0.1:{port}: {error}") from None

    async def _serve(
        self, handler: StreamHandler, peer_id: str, port: int, sock: socket.socket
    ) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        await handler(IncomingStream(peer_id, port, reader, writer))

    def deliver_datagram(self, peer_id: str, channel: DatagramChannel, payload: bytes) -> None:
        sender = self.network.planes[peer_id]
        self._connection_to(sender).datagrams_received += 1
        handler = self._datagram_handlers.get(channel)
        if handler is not None:
            handler(peer_id, payload)
