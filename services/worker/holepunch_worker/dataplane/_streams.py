"""A minimal asyncio stream adapter over an aioquic QuicConnection, until A2's
`streams.py` (the real one, with its own backpressure) lands; same shape:
`StreamMux(quic, transmit)`, `open_stream()`, `event_received(event)`,
`connection_lost(exc)`.

Each QUIC bidirectional stream is an `asyncio.StreamReader` fed from STREAM frames and an
`asyncio.StreamWriter` over a transport whose writes go to `send_stream_data`. Writing
pauses (`drain()` waits) while more than `HIGH_WATER` bytes of the stream are unacked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent, StopSendingReceived, StreamDataReceived, StreamReset

__all__ = ["StreamMux"]

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
STREAM_READER_LIMIT = 256 * 1024
_ERROR_CANCELLED = 0x10  # our application code for a stream closed before its end

StreamTriple = tuple[int, asyncio.StreamReader, asyncio.StreamWriter]


class _StreamTransport(asyncio.Transport):
    def __init__(self, mux: StreamMux, stream_id: int, protocol: asyncio.StreamReaderProtocol):
        super().__init__()
        self._mux = mux
        self._stream_id = stream_id
        self._protocol = protocol
        self._closing = False
        self._eof_sent = False
        self._paused = False
        self.received_eof = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "stream_id":
            return self._stream_id
        return default

    def is_closing(self) -> bool:
        return self._closing

    def can_write_eof(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_sent or self._mux.lost is not None:
            return  # as a socket transport after close: silently ignored
        if data:
            self._mux.send(self._stream_id, bytes(data), end=False)
            self._update_pause()

    def write_eof(self) -> None:
        if not self._eof_sent and self._mux.lost is None:
            self._eof_sent = True
            self._mux.send(self._stream_id, b"", end=True)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.write_eof()
        if not self.received_eof and self._mux.lost is None:
            self._mux.stop(self._stream_id)
        self._finish(None)

    def abort(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._mux.reset(self._stream_id)
        self._finish(None)

    def pause_reading(self) -> None:
        """QUIC flow control bounds what the peer may send; nothing to pause here."""

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._closing

    def _finish(self, exc: Exception | None) -> None:
        self._mux.forget(self._stream_id)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, exc)

    def _update_pause(self) -> None:
        pending = self._mux.unacked(self._stream_id)
        if not self._paused and pending > HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()
        elif self._paused and pending <= LOW_WATER:
            self._paused = False
            self._protocol.resume_writing()

    def peer_gone(self, exc: Exception) -> None:
        if self._paused:
            self._paused = False
            self._protocol.resume_writing()
        if not self._closing:
            self._closing = True
            self._protocol.connection_lost(exc)


class StreamMux:
    def __init__(self, quic: QuicConnection, transmit: Callable[[], None]) -> None:
        self._quic = quic
        self._transmit = transmit
        self._streams: dict[int, tuple[asyncio.StreamReader, _StreamTransport]] = {}
        self.lost: Exception | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.streams_opened = 0
        self._highest_peer_stream = -1

    @property
    def streams_open(self) -> int:
        return len(self._streams)

    def open_stream(self) -> StreamTriple:
        if self.lost is not None:
            raise ConnectionResetError(str(self.lost))
        stream_id = self._quic.get_next_available_stream_id()
        return self._new(stream_id)

    def event_received(self, event: QuicEvent) -> StreamTriple | None:
        """Feed a stream event; a stream the peer opened comes back as a new triple."""
        if isinstance(event, StreamDataReceived):
            new: StreamTriple | None = None
            entry = self._streams.get(event.stream_id)
            if entry is None:
                if (
                    not self._peer_initiated(event.stream_id)
                    or event.stream_id <= self._highest_peer_stream
                ):
                    return None  # a stream already closed here
                self._highest_peer_stream = event.stream_id
                new = self._new(event.stream_id)
                entry = self._streams[event.stream_id]
            reader, transport = entry
            if event.data:
                self.bytes_received += len(event.data)
                reader.feed_data(event.data)
            if event.end_stream:
                transport.received_eof = True
                reader.feed_eof()
            return new
        if isinstance(event, StreamReset):
            entry = self._streams.pop(event.stream_id, None)
            if entry is not None:
                reader, transport = entry
                error = ConnectionResetError(f"stream reset by the peer ({event.error_code})")
                reader.set_exception(error)
                transport.peer_gone(error)
        elif isinstance(event, StopSendingReceived):
            # The peer reads no more: writes go nowhere, but what it sent stays readable.
            # aioquic answers it with a RESET_STREAM itself.
            entry = self._streams.get(event.stream_id)
            if entry is not None:
                entry[1]._eof_sent = True
        return None

    def transmitted(self) -> None:
        """After packets went out or acks came in: resume writers below the low water."""
        for _, transport in list(self._streams.values()):
            if transport._paused:
                transport._update_pause()

    def connection_lost(self, exc: Exception) -> None:
        self.lost = exc
        for reader, transport in list(self._streams.values()):
            if not reader.at_eof():
                reader.set_exception(exc)
            transport.peer_gone(exc)
        self._streams.clear()

    # ------------------------------------------------------------------ for transports

    def send(self, stream_id: int, data: bytes, *, end: bool) -> None:
        try:
            self._quic.send_stream_data(stream_id, data, end_stream=end)
        except RuntimeError:
            return  # the stream was reset or finished meanwhile: the bytes go nowhere
        self.bytes_sent += len(data)
        self._transmit()

    def stop(self, stream_id: int) -> None:
        stream = self._quic._streams.get(stream_id)
        if stream is not None and not stream.receiver.is_finished:
            self._quic.stop_stream(stream_id, _ERROR_CANCELLED)
            self._transmit()

    def reset(self, stream_id: int) -> None:
        stream = self._quic._streams.get(stream_id)
        if stream is not None and not stream.sender.is_finished:
            self._quic.reset_stream(stream_id, _ERROR_CANCELLED)
            self._transmit()

    def forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def unacked(self, stream_id: int) -> int:
        stream = self._quic._streams.get(stream_id)
        if stream is None:
            return 0
        return stream.sender._buffer_stop - stream.sender._buffer_start

    # ------------------------------------------------------------------ internals

    def _peer_initiated(self, stream_id: int) -> bool:
        client_initiated = stream_id & 1 == 0
        return client_initiated != self._quic._is_client

    def _new(self, stream_id: int) -> StreamTriple:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=STREAM_READER_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport = _StreamTransport(self, stream_id, protocol)
        protocol.connection_made(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._streams[stream_id] = (reader, transport)
        self.streams_opened += 1
        return stream_id, reader, writer
