"""The bench application (holepunch_devtools.bench_app) over real loopback TCP: what the
data-plane bench and lab tests rely on when they put it behind a worker."""

from __future__ import annotations

import asyncio
import hashlib
import os

from holepunch_devtools.bench_app import AppServer, echo_round_trips, send_blob


async def _served() -> tuple[AppServer, asyncio.Server, int]:
    app = AppServer()
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    return app, server, port


async def test_the_sink_hashes_exactly_what_was_sent_and_says_when() -> None:
    app, server, port = await _served()
    seen: list[int] = []
    app.progress = seen.append
    pattern = os.urandom(10_000)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ours, theirs = await send_blob(reader, writer, 123_456, pattern)
        writer.close()
        result = await asyncio.wait_for(app.sinks.get(), 5)
    expected = hashlib.sha256((pattern * 13)[:123_456]).hexdigest()
    assert ours == theirs == result.sha256 == expected
    assert result.size == 123_456 and result.first_byte_at <= result.last_byte_at
    assert seen[-1] == 123_456 and seen == sorted(seen)
    first_byte_at = app.first_bytes.get_nowait()  # one connection, one first byte
    assert first_byte_at <= result.first_byte_at and app.first_bytes.empty()


async def test_a_sink_cut_short_records_nothing() -> None:
    app, server, port = await _served()
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"S" + (1000).to_bytes(8, "big") + b"x" * 10)
        writer.write_eof()  # 10 bytes of the 1,000 announced, then the end
        assert await reader.read() == b""  # the server closed without an answer
        writer.close()
    assert app.first_bytes.qsize() == 1  # the server read the transfer's start
    assert app.sinks.empty()


async def test_echo() -> None:
    _app, server, port = await _served()
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        round_trips = await echo_round_trips(reader, writer, 5)
        writer.close()
        assert len(round_trips) == 5 and all(rtt > 0 for rtt in round_trips)
