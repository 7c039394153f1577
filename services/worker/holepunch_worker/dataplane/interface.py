"""What the data plane offers the parts built on it: the proxy, the forwards, the Python API.

One authenticated QUIC connection per introduced peer carries many streams (reliable,
ordered byte streams, each opened to a port on the peer's loopback) and datagrams
(unreliable, on a `DatagramChannel`). The QUIC packets travel inside the punch session's
sealed datagrams, direct or through the relay, so a path change underneath is invisible
to the streams.

Errors carry a machine-readable `reason` (the rendezvous's error code when it refused an
introduction) and a sentence for people.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_SEC",
    "ConnectRefused",
    "DataPlane",
    "DataPlaneError",
    "DatagramChannel",
    "DatagramHandler",
    "IncomingStream",
    "PeerAuthenticationFailed",
    "PeerConnection",
    "PeerUnavailable",
    "StreamHandler",
    "StreamRefused",
]

DEFAULT_CONNECT_TIMEOUT_SEC = 15.0


class DataPlaneError(Exception):
    """`reason` is a stable code (snake_case); `detail` says it in words."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ConnectRefused(DataPlaneError):
    """The rendezvous would not introduce the peer (`reason` is its error code, for
    example `peer_not_found` or `not_allowed`), or the punch failed (`no_path`)."""


class PeerUnavailable(DataPlaneError):
    """No connection to the peer (never made, timed out, or gone: `connection_lost`)."""


class PeerAuthenticationFailed(DataPlaneError):
    """The peer's TLS identity is not the key the rendezvous introduced (`key_mismatch`)."""


class StreamRefused(DataPlaneError):
    """The peer refused the stream: `port_not_exposed`, `connect_failed` (nothing
    listens on that port of its loopback), or `too_many_streams`."""


class DatagramChannel(enum.IntEnum):
    """The first byte of every QUIC datagram between workers: who it is for."""

    APPLICATION = 0  # the Python API's datagrams
    UDP_FORWARD = 1  # UDP_FORWARDS (the forward's own header follows)


@dataclass(frozen=True, slots=True)
class IncomingStream:
    """A stream a peer opened to `port` on this worker, for a handler registered with
    `DataPlane.serve_port`."""

    peer_id: str
    port: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


StreamHandler = Callable[[IncomingStream], Awaitable[None]]
DatagramHandler = Callable[[str, bytes], None]  # (peer_id, payload)


class PeerConnection(Protocol):
    """One authenticated QUIC connection to one peer."""

    @property
    def peer_id(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def max_datagram_payload(self) -> int:
        """The largest payload `send_datagram` takes (after the channel byte)."""
        ...

    async def open_stream(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream to `port` on the peer's loopback, once the peer accepted it.

        Raises `StreamRefused` or `PeerUnavailable`. The writer's `drain()` waits for the
        peer's flow-control credit; closing the writer ends the stream (FIN); a reset
        or a lost connection makes the reader raise `ConnectionResetError`.
        """
        ...

    def send_datagram(self, channel: DatagramChannel, payload: bytes) -> None:
        """Raises `ValueError` when too large, `PeerUnavailable` when closed."""
        ...

    def status(self) -> dict[str, Any]:
        """path, rtt_ms, streams_open, bytes_sent, bytes_received, datagrams_sent,
        datagrams_received, datagrams_lost, authenticated, since."""
        ...

    async def wait_closed(self) -> None: ...


class DataPlane(Protocol):
    """The worker's side of every peer connection."""

    async def connect(
        self, peer_id: str, *, timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC
    ) -> PeerConnection:
        """The connection to `peer_id`, asking the rendezvous for an introduction and
        punching when there is none. Raises `ConnectRefused`, `PeerUnavailable` (timeout)
        or `PeerAuthenticationFailed`."""
        ...

    async def open_stream(
        self, peer_id: str, port: int, *, timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """`connect` then `PeerConnection.open_stream`."""
        ...

    def serve_port(self, port: int, handler: StreamHandler) -> None:
        """Streams peers open to `port` go to `handler` (in-process) instead of TCP."""
        ...

    def on_datagram(self, channel: DatagramChannel, handler: DatagramHandler) -> None: ...

    def send_datagram(self, peer_id: str, channel: DatagramChannel, payload: bytes) -> None:
        """On the existing connection; raises `PeerUnavailable` without one."""
        ...
