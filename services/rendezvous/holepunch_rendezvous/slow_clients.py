"""Deadlines for slow clients: the HTTP upgrade, then the first WebSocket frame.

uvicorn has no deadline for reading a request's headers: a client sending one byte a
second holds its connection open indefinitely (slowloris). `HandshakeDeadlineProtocol`
is uvicorn's own HTTP protocol with one timer per connection, armed when the connection
is made (and, on a kept-alive connection, when the next request's first bytes arrive:
an idle connection is uvicorn's keep-alive timeout's to close) and cancelled as soon as
a request's headers are complete or the connection is handed to the WebSocket protocol.
When it fires first, the connection is closed. The normal path costs one `call_later`
and one `cancel` per connection.

After the upgrade, `receive_first_frame` bounds the wait for the client's first frame.
`SlowClients` counts both kinds and says when a log line is due, at most one per kind
every `log_interval_sec` (a thousand slow clients must not write a thousand lines).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from holepunch_logging import LogThrottle, RendezvousEvent, log_event
from starlette.types import Message
from starlette.websockets import WebSocket
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "HandshakeDeadlineProtocol",
    "SlowClientKind",
    "SlowClients",
    "handshake_deadline_protocol",
    "receive_first_frame",
]

logger = logging.getLogger("holepunch.rendezvous")

SLOW_CLIENT_LOG_INTERVAL_SEC = 10.0


class SlowClientKind(enum.StrEnum):
    HANDSHAKE = "handshake"  # the HTTP request line and headers took too long
    FIRST_MESSAGE = "first_message"  # the WebSocket opened, its first frame took too long


@dataclass(slots=True)
class SlowClients:
    """How many connections each deadline closed, and when to say so in the logs."""

    log_interval_sec: float = SLOW_CLIENT_LOG_INTERVAL_SEC
    clock: Callable[[], float] = time.monotonic
    closed: dict[SlowClientKind, int] = field(
        default_factory=lambda: dict.fromkeys(SlowClientKind, 0)
    )
    _throttles: dict[SlowClientKind, LogThrottle] = field(init=False)

    def __post_init__(self) -> None:
        self._throttles = {kind: LogThrottle(self.log_interval_sec) for kind in SlowClientKind}

    def record(self, kind: SlowClientKind, observed_ip: str | None, deadline_sec: float) -> None:
        """Count one connection closed by a deadline; log it unless one was logged lately
        (the next line then says how many went unlogged in between)."""
        self.closed[kind] += 1
        unlogged = self._throttles[kind].due(self.clock())
        if unlogged is None:
            return
        log_event(
            logger,
            RendezvousEvent.SLOW_CLIENT_CLOSED,
            f"Closed a connection from {observed_ip}: no {kind.value.replace('_', ' ')} "
            f"within {deadline_sec:g} s ({unlogged} more since the last such line)",
            level=logging.WARNING,
            kind=kind.value,
            observed_ip=observed_ip,
            deadline_sec=deadline_sec,
            closed_total=self.closed[kind],
            unlogged=unlogged,
        )

    def describe(self) -> dict[str, int]:
        """For /debug/registry: connections closed by each deadline since the start."""
        return {f"{kind.value}_timeouts": count for kind, count in self.closed.items()}


class HandshakeDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol (httptools, the one `http="auto"` picks here) with a
    deadline on each request's headers; subclassed per server by
    `handshake_deadline_protocol`, which sets the two class attributes."""

    handshake_timeout_sec: float = 10.0
    slow_clients: SlowClients | None = None
    _handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_handshake_timer()

    def data_received(self, data: bytes) -> None:
        if self._handshake_timer is None and self._reading_headers():
            self._arm_handshake_timer()  # the next request on a kept-alive connection begins
        super().data_received(data)
        if self._handshake_timer is not None and not self._reading_headers():
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        super().connection_lost(exc)

    def _arm_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self._handshake_timer = self.loop.call_later(
            self.handshake_timeout_sec, self._handshake_expired
        )

    def _reading_headers(self) -> bool:
        """No request is being served and the connection is still ours (not upgraded)."""
        if self.transport.get_protocol() is not self:
            return False
        return self.cycle is None or self.cycle.response_complete

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.transport.is_closing() or not self._reading_headers():
            return
        if self.slow_clients is not None:
            client = self.client
            self.slow_clients.record(
                SlowClientKind.HANDSHAKE, client[0] if client else None, self.handshake_timeout_sec
            )
        self.transport.close()


def handshake_deadline_protocol(
    timeout_sec: float, slow_clients: SlowClients
) -> type[HandshakeDeadlineProtocol]:
    """The protocol class for one server: its deadline, and the counter it reports to."""
    attributes: dict[str, Any] = {
        "handshake_timeout_sec": timeout_sec,
        "slow_clients": slow_clients,
    }
    return type("ServerHandshakeDeadlineProtocol", (HandshakeDeadlineProtocol,), attributes)


async def receive_first_frame(websocket: WebSocket, timeout_sec: float) -> Message | None:
    """The connection's first ASGI message, or None when none came within `timeout_sec`
    (the caller closes the connection and counts it)."""
    try:
        async with asyncio.timeout(timeout_sec):
            return await websocket.receive()
    except TimeoutError:
        return None
