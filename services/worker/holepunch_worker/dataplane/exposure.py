"""The accepting side of a stream a peer opened: read its header, decide, answer, serve.

- a port registered with `serve_port` goes to its in-process handler;
- a port in `EXPOSE_PORTS` is spliced to 127.0.0.1:port (splice.py: both directions,
  each half-closed when its source ends, writing no faster than the other side drains);
- anything else is refused with `port_not_exposed` and logged (at most one line per
  `refused_log_interval`, counting the rest).

A stream whose first bytes are not a header is ended and logged; no stream, whatever it
sends, disturbs another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from holepunch_logging import LogThrottle, WorkerEvent
from holepunch_protocol.stream_header import (
    OPEN_HEADER_BYTES,
    StreamHeaderError,
    StreamOpen,
    StreamStatus,
    decode_open,
    encode_status,
)

from holepunch_worker.dataplane.interface import IncomingStream, StreamHandler
from holepunch_worker.dataplane.splice import splice

__all__ = ["EXPOSED_HOST", "Exposure", "LogFunction"]

EXPOSED_HOST = "127.0.0.1"
HEADER_TIMEOUT_SEC = 10.0
CONNECT_TIMEOUT_SEC = 5.0
REFUSED_LOG_INTERVAL_SEC = 10.0


class LogFunction(Protocol):
    def __call__(
        self, event: WorkerEvent, message: str, *, level: int = ..., **fields: Any
    ) -> None: ...


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def read_open_header(reader: asyncio.StreamReader) -> StreamOpen:
    """The stream's header, read to its last byte and no further; StreamHeaderError at
    its first wrong byte (the version), or when the stream ends early."""
    data = b""
    for size in (1, OPEN_HEADER_BYTES - 1):
        try:
            data += await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise StreamHeaderError("the stream ended before its header") from None
        header = decode_open(data)
    assert header is not None
    return header


class Exposure:
    def __init__(
        self,
        expose_ports: frozenset[int],
        log: LogFunction,
        now: Callable[[], float],
        *,
        max_streams_per_peer: int = 256,
    ) -> None:
        self.expose_ports = expose_ports
        self.max_streams_per_peer = max_streams_per_peer
        self._log = log
        self._now = now
        self._handlers: dict[int, StreamHandler] = {}
        self._refused_log = LogThrottle(REFUSED_LOG_INTERVAL_SEC)
        self._invalid_log = LogThrottle(REFUSED_LOG_INTERVAL_SEC)
        self.refused = 0

    def serve_port(self, port: int, handler: StreamHandler) -> None:
        if isinstance(port, bool) or not 1 <= port <= 65535:
            raise ValueError(f"port must be in 1..65535, got {port!r}")
        self._handlers[port] = handler

    async def accept(
        self,
        peer_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        streams_open: int,
    ) -> None:
        """Serve one incoming stream to its end."""
        try:
            async with asyncio.timeout(HEADER_TIMEOUT_SEC):
                header = await read_open_header(reader)
        except (StreamHeaderError, TimeoutError, ConnectionError) as error:
            self._invalid(peer_id, str(error) or type(error).__name__)
            writer.transport.abort()
            return
        port = header.port
        if streams_open > self.max_streams_per_peer:
            await self._refuse(peer_id, port, writer, StreamStatus.TOO_MANY_STREAMS)
            return
        handler = self._handlers.get(port)
        if handler is not None:
            await self._serve_in_process(handler, IncomingStream(peer_id, port, reader, writer))
        elif port in self.expose_ports:
            await self._forward(peer_id, port, reader, writer)
        else:
            await self._refuse(peer_id, port, writer, StreamStatus.PORT_NOT_EXPOSED)

    async def _serve_in_process(self, handler: StreamHandler, stream: IncomingStream) -> None:
        stream.writer.write(encode_status(StreamStatus.OK))
        try:
            await handler(stream)
        except Exception as error:
            self._log(
                WorkerEvent.STREAM_HANDLER_FAILED,
                f"the handler for port {stream.port} failed: {error!r}",
                level=logging.WARNING,
                peer_id=stream.peer_id,
                port=stream.port,
                reason=repr(error),
            )
            stream.writer.transport.abort()

    async def _forward(
        self, peer_id: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SEC):
                local_reader, local_writer = await asyncio.open_connection(EXPOSED_HOST, port)
        except (OSError, TimeoutError) as error:
            await self._refuse(
                peer_id, port, writer, StreamStatus.CONNECT_FAILED, str(error) or "timeout"
            )
            return
        writer.write(encode_status(StreamStatus.OK))
        await splice((reader, writer), (local_reader, local_writer))

    async def _refuse(
        self,
        peer_id: str,
        port: int,
        writer: asyncio.StreamWriter,
        status: StreamStatus,
        detail: str = "",
    ) -> None:
        self.refused += 1
        writer.write(encode_status(status))
        writer.write_eof()
        await _close(writer)
        unlogged = self._refused_log.due(self._now())
        if unlogged is not None:
            self._log(
                WorkerEvent.STREAM_REFUSED,
                f"refused a stream from {peer_id} to port {port}: {status.reason}"
                + (f" ({detail})" if detail else ""),
                level=logging.WARNING,
                peer_id=peer_id,
                port=port,
                reason=status.reason,
                detail=detail or None,
                unlogged=unlogged,
                total=self.refused,
            )

    def _invalid(self, peer_id: str, reason: str) -> None:
        unlogged = self._invalid_log.due(self._now())
        if unlogged is not None:
            self._log(
                WorkerEvent.STREAM_HEADER_INVALID,
                f"ended a stream from {peer_id} without a valid header: {reason}",
                level=logging.WARNING,
                peer_id=peer_id,
                reason=reason,
                unlogged=unlogged,
            )
