"""The optional HTTP public-IP lookup against a real local HTTP server: it parses the
echo, refuses anything but an IP literal, and never blocks the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from holepunch_worker.public_ip import fetch_public_ip


@asynccontextmanager
async def echo_server(
    body: bytes, seen: asyncio.Event | None = None, release: asyncio.Event | None = None
) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.set()
        if release is not None:
            await release.wait()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        await server.wait_closed()


async def test_returns_the_echoed_ip() -> None:
    async with echo_server(b"198.51.100.9\n") as url:
        assert await fetch_public_ip(url, timeout=5) == "198.51.100.9"


async def test_refuses_an_answer_that_is_not_an_ip_literal() -> None:
    async with echo_server(b"<html>captive portal</html>") as url:
        with pytest.raises(ValueError, match="not return an IP literal"):
            await fetch_public_ip(url, timeout=5)


async def test_the_event_loop_keeps_running_while_the_lookup_waits() -> None:
    seen, release = asyncio.Event(), asyncio.Event()
    async with echo_server(b"198.51.100.9", seen, release) as url:
        lookup = asyncio.create_task(fetch_public_ip(url, timeout=5))
        # The echo server runs in this very loop and holds its answer until released:
        # while the lookup waits, this loop still accepts the request and runs this test.
        await asyncio.wait_for(seen.wait(), 5)
        assert not lookup.done()
        release.set()
        assert await asyncio.wait_for(lookup, 5) == "198.51.100.9"
