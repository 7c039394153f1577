"""Two aioquic connections joined in memory, driven by the running asyncio loop.

For tests and benchmarks of what runs over a `QuicConnection` without sockets: each side's
`transmit` hands its datagrams to the other side on the next loop iteration (one batch per
flush, as a socket read would), timers run on the loop's clock, and `drop_every=N` drops
every Nth datagram in either direction. Each side gets a `StreamMux` unless `use_mux` is
false; then `on_event` sees the raw events (the benchmark's baseline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from holepunch_worker.dataplane.streams import MuxStream, StreamMux
from holepunch_worker.dataplane.tls_identity import self_signed
from holepunch_worker.identity import WorkerKey

__all__ = ["PipeSide", "QuicPipe"]

_ALPN = "holepunch-pipe"
_CLIENT_ADDR = ("192.0.2.1", 4433)
_SERVER_ADDR = ("192.0.2.2", 4433)


def _destination_id(initial: bytes) -> bytes:
    """The Destination Connection ID of a long-header packet (RFC 9000 section 17.2):
    flags (1 byte), version (4), the id's length (1), the id."""
    return initial[6 : 6 + initial[5]]


@dataclass
class PipeSide:
    name: str
    quic: QuicConnection | None = None
    mux: StreamMux | None = None
    accepted: asyncio.Queue[MuxStream] = field(default_factory=asyncio.Queue)
    handshake_done: asyncio.Event = field(default_factory=asyncio.Event)
    on_event: Callable[[events.QuicEvent], None] | None = None
    on_batch: Callable[[], None] | None = None  # after each batch of received datagrams
    transmits: int = 0
    datagrams_sent: int = 0
    timer: asyncio.TimerHandle | None = None

    def connection(self) -> QuicConnection:
        assert self.quic is not None, f"{self.name}: not connected yet"
        return self.quic

    def streams(self) -> StreamMux:
        assert self.mux is not None, f"{self.name}: no StreamMux (use_mux=False?)"
        return self.mux


class QuicPipe:
    """`async with QuicPipe() as pipe:` connects `pipe.client` and `pipe.server`."""

    def __init__(
        self,
        *,
        drop_every: int = 0,
        use_mux: bool = True,
        send_buffer_limit: int | None = None,
        receive_window: int | None = None,
        reader_limit: int | None = None,
        max_stream_data: int | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._drop_every = drop_every
        self._use_mux = use_mux
        self._mux_options: dict[str, int] = {
            name: value
            for name, value in (
                ("send_buffer_limit", send_buffer_limit),
                ("receive_window", receive_window),
                ("reader_limit", reader_limit),
            )
            if value is not None
        }
        self._max_stream_data = max_stream_data
        self._handshake_timeout = handshake_timeout
        worker_key = WorkerKey.generate()
        self._certificate, self._key = self_signed(worker_key, "quic-pipe"), worker_key.private_key
        self._datagrams_seen = 0
        self.datagrams_dropped = 0
        self._progress = asyncio.Event()
        self.client = PipeSide("client")
        self.server = PipeSide("server")

    async def __aenter__(self) -> QuicPipe:
        client = QuicConnection(configuration=self._configuration(is_client=True))
        self._attach(self.client, client)
        client.connect(_SERVER_ADDR, now=self._loop.time())
        self._transmit(self.client)
        async with asyncio.timeout(self._handshake_timeout):
            await self.client.handshake_done.wait()
            await self.server.handshake_done.wait()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for side in (self.client, self.server):
            if side.timer is not None:
                side.timer.cancel()
            if side.mux is not None:
                side.mux.connection_lost(None)
        self.client.quic = self.server.quic = None

    async def until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until `predicate()` holds, re-checked after every delivered batch."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._progress.clear()
                await self._progress.wait()

    async def run(self, *coroutines: Awaitable[object], timeout: float = 60.0) -> list[object]:
        async with asyncio.timeout(timeout):
            return list(await asyncio.gather(*coroutines))

    def flush(self, side: PipeSide) -> None:
        """What a StreamMux's `transmit` does: send what `side` has to send."""
        self._transmit(side)

    def _configuration(self, *, is_client: bool) -> QuicConfiguration:
        configuration = QuicConfiguration(is_client=is_client, alpn_protocols=[_ALPN])
        if self._max_stream_data is not None:
            configuration.max_stream_data = self._max_stream_data
        if is_client:
            configuration.verify_mode = 0  # ssl.CERT_NONE: the tests here are not about TLS
        else:
            configuration.certificate = self._certificate
            configuration.private_key = self._key
        return configuration

    def _attach(self, side: PipeSide, quic: QuicConnection) -> None:
        side.quic = quic
        if self._use_mux:
            side.mux = StreamMux(
                quic,
                lambda: self._transmit(side),
                peer_name=self._other(side).name,
                **self._mux_options,
            )

    def _other(self, side: PipeSide) -> PipeSide:
        return self.server if side is self.client else self.client

    def _transmit(self, side: PipeSide) -> None:
        quic = side.quic
        if quic is None:
            return
        side.transmits += 1
        batch = [data for data, _ in quic.datagrams_to_send(now=self._loop.time())]
        side.datagrams_sent += len(batch)
        kept = []
        for data in batch:
            self._datagrams_seen += 1
            if self._drop_every and self._datagrams_seen % self._drop_every == 0:
                self.datagrams_dropped += 1
            else:
                kept.append(data)
        if kept:
            self._loop.call_soon(self._deliver, self._other(side), kept)
        self._arm_timer(side)

    def _deliver(self, side: PipeSide, batch: list[bytes]) -> None:
        if side.quic is None:
            if side is not self.server or self.client.quic is None:
                return  # the pipe was closed
            self._attach(
                side,
                QuicConnection(
                    configuration=self._configuration(is_client=False),
                    original_destination_connection_id=_destination_id(batch[0]),
                ),
            )
        quic = side.connection()
        source = _CLIENT_ADDR if side is self.server else _SERVER_ADDR
        for data in batch:
            quic.receive_datagram(data, source, now=self._loop.time())
        self._handle_events(side)
        if side.mux is not None:
            side.mux.after_receive()
        if side.on_batch is not None:
            side.on_batch()
        self._transmit(side)
        self._progress.set()

    def _handle_events(self, side: PipeSide) -> None:
        quic = side.connection()
        while (event := quic.next_event()) is not None:
            if isinstance(event, events.HandshakeCompleted):
                side.handshake_done.set()
            if side.mux is not None:
                opened = side.mux.event_received(event)
                if opened is not None:
                    side.accepted.put_nowait(opened)
            if side.on_event is not None:
                side.on_event(event)

    def _arm_timer(self, side: PipeSide) -> None:
        if side.timer is not None:
            side.timer.cancel()
            side.timer = None
        deadline = side.quic.get_timer() if side.quic is not None else None
        if deadline is not None:
            side.timer = self._loop.call_at(deadline, self._on_timer, side)

    def _on_timer(self, side: PipeSide) -> None:
        side.timer = None
        quic = side.quic
        if quic is None:
            return
        quic.handle_timer(now=self._loop.time())
        self._handle_events(side)
        if side.mux is not None:
            side.mux.after_receive()
        self._transmit(side)
        self._progress.set()
