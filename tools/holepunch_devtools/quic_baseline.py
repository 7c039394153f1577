"""The yardstick of `make bench-data`: aioquic by itself, nothing of holepunch.

One process, two plain UDP sockets on 127.0.0.1, aioquic's own asyncio endpoints
(`aioquic.asyncio.connect` / `serve`), one bidirectional stream carrying `size` bytes from
the client to the server, which hashes them; then 64-byte request/response round trips on
a second stream, which the server echoes. Backpressure: the client writes only while
less than `HIGH_WATER_BYTES` of the stream is unacknowledged (aioquic buffers whatever it
is given), so memory stays flat and the figure is the protocol's, not a buffer's.

The TLS identity is an Ed25519 key in a self-signed certificate, as the workers use, and
aioquic's defaults (Reno, 1,200-byte packets, 1 MiB flow-control windows) as they do.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import statistics
import time
from dataclasses import dataclass

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamDataReceived
from holepunch_worker.dataplane.streams import send_progress
from holepunch_worker.dataplane.tls_identity import self_signed
from holepunch_worker.identity import WorkerKey

__all__ = [
    "HIGH_WATER_BYTES",
    "LATENCY_ROUND_TRIPS",
    "BaselineResult",
    "run_baseline",
]

ALPN = "holepunch-bench"
HIGH_WATER_BYTES = 1 << 20
SINK_STREAM = 0  # the client's first bidirectional stream
LATENCY_ROUND_TRIPS = 200
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class BaselineResult:
    size: int
    seconds: float  # first byte written to last byte hashed by the server
    cpu_seconds: float  # this process (both ends), over the same interval
    sha256_sent: str
    sha256_received: str
    # 64-byte request/response on a second stream of the same connection, median seconds.
    request_response_sec: float

    @property
    def mbit_per_sec(self) -> float:
        return self.size * 8 / 1e6 / self.seconds

    @property
    def cpu_seconds_per_mb(self) -> float:
        return self.cpu_seconds / (self.size / 1e6)

    @property
    def intact(self) -> bool:
        return self.sha256_sent == self.sha256_received


class _Sink(QuicConnectionProtocol):
    """Hashes every byte of the first stream (`finished` gets (bytes, sha256) at its FIN)
    and echoes every other stream."""

    finished: asyncio.Future[tuple[int, str]]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._hash = hashlib.sha256()
        self._received = 0
        self.finished = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.stream_id != SINK_STREAM:
            self._quic.send_stream_data(event.stream_id, event.data)
            self.transmit()
        elif isinstance(event, StreamDataReceived):
            self._hash.update(event.data)
            self._received += len(event.data)
            if event.end_stream and not self.finished.done():
                self.finished.set_result((self._received, self._hash.hexdigest()))


class _Source(QuicConnectionProtocol):
    """Writes one stream with backpressure: `progress` is set whenever a datagram or timer
    may have moved the acknowledged offset."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.progress = asyncio.Event()
        self.echoed = bytearray()
        self._echo_arrived = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self.echoed += event.data
            self._echo_arrived.set()

    def datagram_received(self, data: bytes | str, addr: tuple[str | object, int]) -> None:
        super().datagram_received(data, addr)
        self.progress.set()

    async def send(self, stream_id: int, size: int, pattern: bytes) -> str:
        digest = hashlib.sha256()
        sent = 0
        while sent < size:
            while send_progress(self._quic, stream_id).unacknowledged >= HIGH_WATER_BYTES:
                self.progress.clear()
                await self.progress.wait()
            chunk = pattern[: min(CHUNK_BYTES, size - sent)]
            digest.update(chunk)
            sent += len(chunk)
            self._quic.send_stream_data(stream_id, chunk, end_stream=sent == size)
            self.transmit()
        return digest.hexdigest()

    async def round_trips(self, count: int, message_bytes: int = 64) -> list[float]:
        stream_id = self._quic.get_next_available_stream_id()
        message = bytes(range(message_bytes))
        times = []
        for _ in range(count):
            self.echoed.clear()
            at = time.perf_counter()
            self._quic.send_stream_data(stream_id, message)
            self.transmit()
            while len(self.echoed) < message_bytes:
                self._echo_arrived.clear()
                await self._echo_arrived.wait()
            times.append(time.perf_counter() - at)
        return times


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def bench_pattern() -> bytes:
    """Incompressible bytes (random, generated once per run) that the sources repeat."""
    return os.urandom(CHUNK_BYTES)


async def run_baseline(size: int, timeout: float = 600.0) -> BaselineResult:
    """Send `size` bytes over one aioquic stream between two loopback sockets."""
    worker_key = WorkerKey.generate()
    key, certificate = worker_key.private_key, self_signed(worker_key, "baseline-server")
    server_config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    server_config.certificate, server_config.private_key = certificate, key
    client_config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN])
    client_config.verify_mode = ssl.CERT_NONE  # a throwaway certificate: nothing to verify

    sinks: list[_Sink] = []

    def make_sink(*args: object, **kwargs: object) -> _Sink:
        sink = _Sink(*args, **kwargs)
        sinks.append(sink)
        return sink

    port = _free_udp_port()
    server = await serve("127.0.0.1", port, configuration=server_config, create_protocol=make_sink)
    pattern = bench_pattern()
    try:
        async with connect(
            "127.0.0.1", port, configuration=client_config, create_protocol=_Source
        ) as client:
            assert isinstance(client, _Source)
            stream_id = client._quic.get_next_available_stream_id()
            assert stream_id == SINK_STREAM
            started, cpu_started = time.perf_counter(), time.process_time()
            sent_digest = await asyncio.wait_for(client.send(stream_id, size, pattern), timeout)
            received, received_digest = await asyncio.wait_for(sinks[0].finished, timeout)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            round_trips = await asyncio.wait_for(client.round_trips(LATENCY_ROUND_TRIPS), timeout)
    finally:
        server.close()
    if received != size:
        raise RuntimeError(f"baseline: the server received {received} of {size} bytes")
    return BaselineResult(
        size, seconds, cpu, sent_digest, received_digest, statistics.median(round_trips)
    )
