"""asyncio streams over one aioquic `QuicConnection`, with backpressure both ways.

The owner of the connection feeds it datagrams and timers and flushes it with `transmit`;
`StreamMux` turns its stream events into `asyncio.StreamReader`/`StreamWriter` pairs and
the writers' bytes back into stream data:

- `open_stream()` opens a bidirectional stream; `event_received(event)` feeds the readers
  and returns each stream the peer opens, for the owner to accept; `after_receive()`, after
  each batch of datagrams, wakes the writers whose bytes the peer acknowledged;
  `connection_lost(exc)` makes every reader and writer fail instead of hanging.
- Send side: `drain()` waits while the bytes written on a stream and not yet acknowledged
  by the peer exceed `send_buffer_limit`. (aioquic's own asyncio layer never pauses, so a
  writer can buffer without bound.) Writes are flushed by one `transmit` per loop iteration.
- Receive side: aioquic raises a stream's credit (MAX_STREAM_DATA) as data arrives, whether
  or not anything reads it. Here the credit is at most `receive_window` bytes beyond what
  arrived, and it stops growing while the reader is paused (its buffer is above twice its
  limit), so a peer writing to an application that does not read is stopped by QUIC flow
  control, and its own `drain()` blocks.

Closing follows asyncio's TCP transports: `write_eof()` half-closes (FIN); `close()` sends
the FIN after the data and stops reading (the reader sees EOF, the peer a STOP_SENDING);
`abort()` resets both directions. A reset from the peer fails the reader with
`ConnectionResetError` and closes the writer. `wait_closed()` returns once the peer
acknowledged everything written, FIN included.

Two functions alone touch aioquic's private state, `send_progress` and
`install_receive_credit`; tests/unit/test_dataplane_streams.py fails if aioquic changes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from aioquic.buffer import UINT_VAR_MAX_SIZE
from aioquic.quic import events
from aioquic.quic.connection import (
    QuicConnection,
    stream_is_client_initiated,
    stream_is_unidirectional,
)
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.stream import QuicStream

__all__ = [
    "DEFAULT_READER_LIMIT",
    "DEFAULT_SEND_BUFFER_LIMIT",
    "STREAM_ABORTED",
    "STREAM_NOT_READ",
    "MuxStream",
    "PeerStreamIds",
    "SendProgress",
    "StreamMux",
    "install_receive_credit",
    "receive_credit",
    "send_progress",
]

# A writer's drain() waits above this many unacknowledged bytes. It must cover the path's
# bandwidth-delay product for one stream to fill the path (100 Mbit/s x 50 ms = 625 KB).
DEFAULT_SEND_BUFFER_LIMIT = 1 << 20
# asyncio.StreamReader's limit: the reader pauses (and the peer's credit stops growing)
# above twice this many buffered bytes.
DEFAULT_READER_LIMIT = 1 << 16

# Application error codes in RESET_STREAM and STOP_SENDING frames.
STREAM_NOT_READ = 0  # close(): this side will not read what the peer still sends
STREAM_ABORTED = 1  # abort(), or the answer to the peer's reset


# --- pure rules ---------------------------------------------------------------------------


def receive_credit(*, received: int, granted: int, window: int, reading_paused: bool) -> int:
    """The stream data limit to grant the peer (RFC 9000 section 4.1).

    `received + window`, raised only once at most half a window of credit is left (one
    MAX_STREAM_DATA frame per half window, not one per packet), and not raised at all while
    the application is not reading. Never lower than `granted`: a limit cannot shrink.
    """
    if reading_paused or granted - received > window // 2:
        return granted
    return max(granted, received + window)


class PeerStreamIds:
    """Which stream ids of one type (bidirectional or unidirectional) the peer opens for
    the first time.

    "Not in the table" is not enough: stream frames arrive out of order, and data can still
    arrive for a stream this side has already forgotten (aborted). So remember the ids below
    the highest seen that were not seen yet; aioquic's MAX_STREAMS bounds how many.
    """

    def __init__(self) -> None:
        self._next_index = 0
        self._unseen: set[int] = set()

    def first_sight(self, stream_id: int) -> bool:
        index = stream_id // 4
        if index >= self._next_index:
            self._unseen.update(range(self._next_index, index))
            self._next_index = index + 1
            return True
        if index in self._unseen:
            self._unseen.remove(index)
            return True
        return False


# --- the seam with aioquic's private state ------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendProgress:
    unacknowledged: int  # bytes written on the stream that the peer has not acknowledged
    finished: bool  # everything written, FIN or reset included, was acknowledged


def send_progress(quic: QuicConnection, stream_id: int) -> SendProgress:
    """How far the peer has acknowledged a stream's send side.

    aioquic exposes no count of unacknowledged bytes: its `QuicStreamSender` keeps the
    written bytes in `_buffer` until they are acknowledged. A stream aioquic no longer knows
    was finished both ways and discarded (or never written: then nothing is pending).
    """
    stream = quic._streams.get(stream_id)
    if stream is None:
        return SendProgress(unacknowledged=0, finished=True)
    sender = stream.sender
    return SendProgress(unacknowledged=len(sender._buffer), finished=sender.is_finished)


_MAX_STREAM_DATA_FRAME_CAPACITY = 1 + 2 * UINT_VAR_MAX_SIZE


def install_receive_credit(quic: QuicConnection, credit: Callable[[QuicStream], int]) -> None:
    """Make `credit(stream)` decide each stream's limit instead of aioquic.

    aioquic's `_write_stream_limits` doubles a stream's limit whenever half of it was
    received, read or not. This replaces it on this connection only, and writes the same
    MAX_STREAM_DATA frame when the limit grows (re-sent when lost: aioquic's delivery
    handler zeroes `max_stream_data_local_sent`). The frame is not written to a qlog trace.
    """
    delivery_handler = getattr(quic, "_on_max_stream_data_delivery", None)
    if not callable(getattr(quic, "_write_stream_limits", None)) or delivery_handler is None:
        raise RuntimeError("aioquic changed: no _write_stream_limits to replace")

    def write_stream_limits(builder: QuicPacketBuilder, space: object, stream: QuicStream) -> None:
        if stream.max_stream_data_local == 0:  # a stream this side cannot receive on
            return
        stream.max_stream_data_local = max(stream.max_stream_data_local, credit(stream))
        if stream.max_stream_data_local_sent == stream.max_stream_data_local:
            return
        buf = builder.start_frame(
            QuicFrameType.MAX_STREAM_DATA,
            capacity=_MAX_STREAM_DATA_FRAME_CAPACITY,
            handler=delivery_handler,
            handler_args=(stream,),
        )
        buf.push_uint_var(stream.stream_id or 0)
        buf.push_uint_var(stream.max_stream_data_local)
        stream.max_stream_data_local_sent = stream.max_stream_data_local

    setattr(quic, "_write_stream_limits", write_stream_limits)  # noqa: B010 (mypy: a method)


# --- asyncio ------------------------------------------------------------------------------


class MuxStream(NamedTuple):
    stream_id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class _StreamProtocol(asyncio.streams.FlowControlMixin):
    """The writer's flow control (pause/resume from the transport wakes `drain()`), plus
    the close waiter `StreamWriter.wait_closed()` awaits, which FlowControlMixin lacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._closed: asyncio.Future[None] = loop.create_future()

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future[None]:
        return self._closed

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._closed.done():
            return
        if exc is None:
            self._closed.set_result(None)
        else:
            self._closed.set_exception(exc)
            self._closed.exception()  # retrieved: nobody has to await wait_closed()


class QuicStreamTransport(asyncio.Transport):
    """One QUIC stream as an asyncio transport (what the StreamWriter writes to)."""

    def __init__(
        self,
        mux: StreamMux,
        stream_id: int,
        protocol: _StreamProtocol,
        reader: asyncio.StreamReader,
        extra: dict[str, Any],
    ) -> None:
        super().__init__(extra)
        self._mux = mux
        self.stream_id = stream_id
        self._stream_protocol = protocol
        self._reader = reader
        self._high_water = mux.send_buffer_limit
        self._low_water = mux.send_buffer_limit
        self._write_paused = False
        self._eof_written = False
        self._closing = False
        self._send_done = False  # nothing more will be sent: FIN acknowledged, reset, lost
        self._peer_stopped_reading: ConnectionResetError | None = (
            None  # a STOP_SENDING that lost nothing
        )
        self._receive_done = False  # the reader got its EOF or its exception
        self._protocol_told = False
        self.reading_paused = False

    def __repr__(self) -> str:
        return f"<QuicStreamTransport stream {self.stream_id}{' closing' if self._closing else ''}>"

    # asyncio.WriteTransport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data: expected a bytes-like object, not {type(data).__name__}")
        if self._peer_stopped_reading is not None and not self._closing:
            # Like a TCP write after the peer closed: an error, not bytes silently dropped.
            self._closing = True
            self._tell_protocol(self._peer_stopped_reading)
            return
        if self._send_done or self._closing:
            return  # like asyncio's socket transports: writes after the end are dropped
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if data:
            self._mux._send(self, bytes(data), end_stream=False)

    def write_eof(self) -> None:
        if self._eof_written or self._send_done:
            return
        self._eof_written = True
        self._mux._send(self, b"", end_stream=True)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        if self._send_done:
            return 0
        return send_progress(self._mux._quic, self.stream_id).unacknowledged

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high = self._mux.send_buffer_limit if high is None else high
        low = high if low is None else low
        if not 0 <= low <= high:
            raise ValueError(f"write buffer limits: need 0 <= low <= high, got {low}, {high}")
        self._high_water, self._low_water = high, low
        self._update_write_pause()

    def abort(self) -> None:
        self._mux._abort(self)

    # asyncio.BaseTransport

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._send_done and not self._eof_written:
            self._eof_written = True
            self._mux._send(self, b"", end_stream=True)
        if not self._receive_done:
            self._mux._stop_receiving(self)
            self._end_reader(None)
        self._mux._check_sent(self)

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._stream_protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError("a QUIC stream keeps its protocol")

    # asyncio.ReadTransport: StreamReader pauses us above twice its limit

    def is_reading(self) -> bool:
        return not self.reading_paused and not self._receive_done

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self._mux._schedule_transmit()  # the credit the peer waits for

    # driven by the mux

    def _data_received(self, data: bytes, end_stream: bool) -> None:
        if self._receive_done:
            return
        if data:
            self._reader.feed_data(data)
        if end_stream:
            self._end_reader(None)
            self._finish_if_done()

    def _update_write_pause(self) -> None:
        if self._send_done:
            return
        unacknowledged = self.get_write_buffer_size()
        if not self._write_paused and unacknowledged > self._high_water:
            self._write_paused = True
            self._stream_protocol.pause_writing()
        elif self._write_paused and unacknowledged <= self._low_water:
            self._write_paused = False
            self._stream_protocol.resume_writing()

    def _end_reader(self, exc: Exception | None) -> None:
        if self._receive_done:
            return
        self._receive_done = True
        if exc is None:
            self._reader.feed_eof()
        else:
            self._reader.set_exception(exc)

    def _end_sending(self, exc: Exception | None) -> None:
        if self._send_done:
            return
        self._send_done = True
        if exc is not None:
            self._closing = True
            self._tell_protocol(exc)
        elif self._write_paused:
            self._write_paused = False
            self._stream_protocol.resume_writing()

    def _lose(self, reason: str) -> None:
        self._end_reader(ConnectionResetError(f"connection lost: {reason}"))
        self._end_sending(ConnectionResetError(f"connection lost: {reason}"))
        self._closing = True
        self._tell_protocol(ConnectionResetError(f"connection lost: {reason}"))  # if not yet

    def _tell_protocol(self, exc: Exception | None) -> None:
        if not self._protocol_told:
            self._protocol_told = True
            self._stream_protocol.connection_lost(exc)

    def _finish_if_done(self) -> None:
        if self._send_done and self._receive_done:
            self._closing = True
            self._tell_protocol(None)
            self._mux._forget(self)

    @property
    def _needs_acks(self) -> bool:
        """Whether acknowledgements can change anything: a paused writer or a pending FIN."""
        return not self._send_done and (self._write_paused or self._eof_written)


class StreamMux:
    """The streams of one QUIC connection as asyncio streams. See the module docstring.

    The owner calls `event_received` for every event of the connection, `after_receive`
    after each batch of received datagrams, and `connection_lost` once; `transmit` must
    flush the connection (`datagrams_to_send`, send them, re-arm the timer).
    """

    def __init__(
        self,
        quic: QuicConnection,
        transmit: Callable[[], None],
        *,
        send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT,
        receive_window: int | None = None,
        reader_limit: int = DEFAULT_READER_LIMIT,
        peer_name: str = "peer",
    ) -> None:
        if send_buffer_limit < 0:
            raise ValueError(f"send_buffer_limit must be >= 0, got {send_buffer_limit}")
        window = quic.configuration.max_stream_data if receive_window is None else receive_window
        if window <= 0:
            raise ValueError(f"receive_window must be > 0, got {window}")
        self._quic = quic
        self._transmit = transmit
        self._loop = asyncio.get_running_loop()
        self.send_buffer_limit = send_buffer_limit
        self.receive_window = window
        self._reader_limit = reader_limit
        self._peer_name = peer_name
        self._streams: dict[int, QuicStreamTransport] = {}
        self._peer_ids = {False: PeerStreamIds(), True: PeerStreamIds()}  # by unidirectional
        self._transmit_scheduled = False
        self._lost: Exception | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.streams_opened = 0  # by either side, over the connection's life
        install_receive_credit(quic, self._credit)

    @property
    def streams_open(self) -> int:
        return len(self._streams)

    @property
    def closed(self) -> bool:
        return self._lost is not None

    def open_stream(self) -> MuxStream:
        """A new bidirectional stream from this side. Raises `ConnectionResetError` once
        the connection is lost."""
        if self._lost is not None:
            raise ConnectionResetError(f"connection lost: {self._lost}")
        stream_id = self._quic.get_next_available_stream_id()
        # Writing nothing makes aioquic create the stream now, so the next open gets
        # another id; no frame is sent until there is data.
        self._quic.send_stream_data(stream_id, b"")
        return self._add(stream_id)

    def event_received(self, event: events.QuicEvent) -> MuxStream | None:
        """Handle one connection event; returns the stream when the peer opened one."""
        if isinstance(event, events.StreamDataReceived):
            return self._on_data(event)
        if isinstance(event, events.StreamReset):
            self._on_reset(event.stream_id, event.error_code)
        elif isinstance(event, events.StopSendingReceived):
            self._on_stop_sending(event.stream_id, event.error_code)
        elif isinstance(event, events.ConnectionTerminated):
            self.connection_lost(
                ConnectionResetError(
                    f"connection closed: {event.reason_phrase or event.error_code}"
                )
            )
        return None

    def after_receive(self) -> None:
        """Re-check the streams waiting for acknowledgements (paused writers, FINs).

        Acknowledgements arrive only with datagrams, so once per received batch is enough.
        """
        for transport in [t for t in self._streams.values() if t._needs_acks]:
            self._check_sent(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Every reader raises `ConnectionResetError`, every drain() and open_stream() too."""
        if self._lost is not None:
            return
        reason = "closed" if exc is None else str(exc) or type(exc).__name__
        self._lost = ConnectionResetError(reason)
        transports = list(self._streams.values())
        self._streams.clear()
        for transport in transports:
            transport._lose(reason)

    # used by the transports

    def _send(self, transport: QuicStreamTransport, data: bytes, *, end_stream: bool) -> None:
        try:
            self._quic.send_stream_data(transport.stream_id, data, end_stream=end_stream)
        except (RuntimeError, ValueError) as exc:
            # The peer's STOP_SENDING already reset the stream in aioquic, before its event
            # reached us.
            transport._end_sending(ConnectionResetError(f"stream closed by the peer: {exc}"))
            transport._finish_if_done()
            return
        self.bytes_sent += len(data)
        transport._update_write_pause()
        self._schedule_transmit()

    def _stop_receiving(self, transport: QuicStreamTransport) -> None:
        if self._lost is None:
            self._quic.stop_stream(transport.stream_id, STREAM_NOT_READ)
            self._schedule_transmit()

    def _abort(self, transport: QuicStreamTransport) -> None:
        transport._closing = True
        if self._lost is None:
            if not transport._receive_done:
                self._quic.stop_stream(transport.stream_id, STREAM_ABORTED)
            if not transport._send_done:
                self._quic.reset_stream(transport.stream_id, STREAM_ABORTED)
            self._schedule_transmit()
        transport._end_reader(None)
        transport._end_sending(None)
        transport._finish_if_done()

    def _check_sent(self, transport: QuicStreamTransport) -> None:
        if transport._send_done:
            transport._finish_if_done()
            return
        transport._update_write_pause()
        if transport._eof_written and send_progress(self._quic, transport.stream_id).finished:
            transport._end_sending(None)
            transport._finish_if_done()

    def _forget(self, transport: QuicStreamTransport) -> None:
        self._streams.pop(transport.stream_id, None)

    def _schedule_transmit(self) -> None:
        if not self._transmit_scheduled and self._lost is None:
            self._transmit_scheduled = True
            self._loop.call_soon(self._run_transmit)

    def _run_transmit(self) -> None:
        self._transmit_scheduled = False
        if self._lost is None:
            self._transmit()

    # inside

    def _credit(self, stream: QuicStream) -> int:
        transport = self._streams.get(stream.stream_id or 0)
        if transport is None or transport._receive_done:
            return stream.max_stream_data_local  # nothing reads it: no more credit
        return receive_credit(
            received=stream.receiver.highest_offset,
            granted=stream.max_stream_data_local,
            window=self.receive_window,
            reading_paused=transport.reading_paused,
        )

    def _add(self, stream_id: int) -> MuxStream:
        reader = asyncio.StreamReader(limit=self._reader_limit, loop=self._loop)
        protocol = _StreamProtocol(self._loop)
        extra = {"peername": (self._peer_name, stream_id), "stream_id": stream_id}
        transport = QuicStreamTransport(self, stream_id, protocol, reader, extra)
        reader.set_transport(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
        self._streams[stream_id] = transport
        self.streams_opened += 1
        return MuxStream(stream_id, reader, writer)

    def _first_sight_from_peer(self, stream_id: int) -> bool:
        if stream_is_client_initiated(stream_id) == self._quic.configuration.is_client:
            return False
        return self._peer_ids[stream_is_unidirectional(stream_id)].first_sight(stream_id)

    def _on_data(self, event: events.StreamDataReceived) -> MuxStream | None:
        if self._lost is not None:
            return None
        stream_id = event.stream_id
        transport = self._streams.get(stream_id)
        opened = None
        if transport is None:
            if not self._first_sight_from_peer(stream_id):
                return None  # a stream this side already forgot
            if stream_is_unidirectional(stream_id):
                self._quic.stop_stream(stream_id, STREAM_ABORTED)  # only bidirectional here
                self._schedule_transmit()
                return None
            opened = self._add(stream_id)
            transport = self._streams[stream_id]
        if not transport._receive_done:
            self.bytes_received += len(event.data)
        transport._data_received(event.data, event.end_stream)
        return opened

    def _on_reset(self, stream_id: int, error_code: int) -> None:
        transport = self._streams.get(stream_id)
        if transport is None:
            self._first_sight_from_peer(stream_id)  # opened and reset before any data
            return
        if transport._receive_done:
            return  # this side stopped reading already: the reset only answers its STOP_SENDING
        transport._end_reader(ConnectionResetError(f"stream reset by the peer (code {error_code})"))
        if not transport._send_done:
            self._quic.reset_stream(stream_id, STREAM_ABORTED)
            self._schedule_transmit()
        reset = ConnectionResetError(f"stream reset by the peer (code {error_code})")
        transport._end_sending(reset)
        if transport._peer_stopped_reading is not None:  # its STOP_SENDING came first: an abort
            transport._closing = True
            transport._tell_protocol(reset)
        transport._finish_if_done()

    def _on_stop_sending(self, stream_id: int, error_code: int) -> None:
        transport = self._streams.get(stream_id)
        if transport is None:
            return
        # The peer closed its side, as a TCP peer closes: closing this side stays clean (as
        # on TCP, bytes the peer never read are not reported), and the next write fails.
        transport._peer_stopped_reading = ConnectionResetError(
            f"the peer stopped reading the stream (code {error_code})"
        )
        transport._end_sending(None)
        transport._finish_if_done()
