"""The application the data-plane bench and lab tests put behind a worker (EXPOSE_PORTS),
and its client side. It needs nothing from the stream but ordered bytes (no half-close).

A connection starts with one byte naming what it is for:

- `S` + 8-byte big-endian length + that many bytes: the server hashes them and answers
  the 64 hex digits of their SHA-256 (the sink: throughput and integrity);
- `E`: everything that follows is echoed back as it arrives (latency).

`AppServer` records each sink transfer's arrival time (for throughput measured from the
same clock as the sender), and the arrival of each connection's first byte, and hands
them to whoever waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "ECHO",
    "SINK",
    "AppServer",
    "SinkResult",
    "echo_round_trips",
    "send_blob",
]

SINK, ECHO = b"S", b"E"
_LENGTH = struct.Struct("!Q")
_READ_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class SinkResult:
    size: int
    sha256: str
    first_byte_at: float  # time.perf_counter() of this process
    last_byte_at: float


@dataclass
class AppServer:
    """The handler of every connection; `sinks` receives each completed sink transfer.
    `progress(received)` is called as a sink transfer advances (for mid-transfer actions)."""

    sinks: asyncio.Queue[SinkResult] = field(default_factory=asyncio.Queue)
    first_bytes: asyncio.Queue[float] = field(default_factory=asyncio.Queue)  # perf_counter
    progress: Callable[[int], None] | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            kind = await reader.readexactly(1)
            self.first_bytes.put_nowait(time.perf_counter())
            if kind == SINK:
                await self._sink(reader, writer)
            elif kind == ECHO:
                await _echo(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _sink(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        digest = hashlib.sha256()
        received = 0
        first_at: float | None = None
        while received < size:
            data = await reader.read(min(_READ_BYTES, size - received))
            if not data:
                raise asyncio.IncompleteReadError(b"", size - received)
            if first_at is None:
                first_at = time.perf_counter()
            digest.update(data)
            received += len(data)
            if self.progress is not None:
                self.progress(received)
        last_at = time.perf_counter()
        self.sinks.put_nowait(SinkResult(size, digest.hexdigest(), first_at or last_at, last_at))
        writer.write(digest.hexdigest().encode())
        await writer.drain()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(_READ_BYTES):
        writer.write(data)
        await writer.drain()


async def send_blob(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int, pattern: bytes
) -> tuple[str, str]:
    """Send `size` bytes (`pattern` repeated) to a sink; (our SHA-256, the sink's answer)."""
    digest = hashlib.sha256()
    writer.write(SINK + _LENGTH.pack(size))
    sent = 0
    while sent < size:
        chunk = pattern[: min(len(pattern), size - sent)]
        digest.update(chunk)
        writer.write(chunk)
        sent += len(chunk)
        await writer.drain()
    answer = await reader.readexactly(64)
    return digest.hexdigest(), answer.decode(errors="replace")


async def echo_round_trips(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    count: int,
    message_bytes: int = 64,
    started: bool = False,
) -> list[float]:
    """`count` request/response round trips on an echo connection, in seconds each
    (`started`: the `E` byte was already sent)."""
    if not started:
        writer.write(ECHO)
    message = bytes(range(256))[:message_bytes]
    round_trips = []
    for _ in range(count):
        at = time.perf_counter()
        writer.write(message)
        await writer.drain()
        echoed = await reader.readexactly(len(message))
        round_trips.append(time.perf_counter() - at)
        if echoed != message:
            raise AssertionError(f"echo changed the message: {echoed!r}")
    return round_trips
