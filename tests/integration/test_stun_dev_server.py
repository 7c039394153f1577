"""The dev STUN server: in-process on two loopback addresses, and as `holepunch-dev-stun`."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any

from aioice import stun
from holepunch_devtools.stun_server import start_stun_server

from tests.support.ports import free_udp_port


def exchange(server: tuple[str, int], datagram: bytes, timeout: float = 2.0) -> bytes | None:
    """Send one datagram from a fresh socket; the reply, or None after `timeout`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(timeout)
        client.sendto(datagram, server)
        try:
            return client.recvfrom(2048)[0]
        except TimeoutError:
            return None


async def test_answers_on_every_address_and_ignores_garbage() -> None:
    async with await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)]) as server:
        assert [host for host, _ in server.addresses] == ["127.0.0.1", "127.0.0.2"]
        for address in server.addresses:
            # Garbage first: no answer (a short wait, since silence is the behaviour).
            assert await asyncio.to_thread(exchange, address, b"garbage", 0.2) is None
            request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.bind(("127.0.0.1", 0))
                client.settimeout(2)
                client.sendto(bytes(request), address)
                data, source = await asyncio.to_thread(client.recvfrom, 2048)
                local = client.getsockname()
            assert source == address  # answered from the address it was asked on
            response = stun.parse_message(data)
            assert response.transaction_id == request.transaction_id
            assert response.attributes["XOR-MAPPED-ADDRESS"] == local
        assert server.counters.answered == 2
        assert server.counters.ignored == 2


async def read_events(stream: asyncio.StreamReader, until: str) -> list[dict[str, Any]]:
    """JSON log lines up to and including the first `until` event."""
    events: list[dict[str, Any]] = []
    async for raw in stream:
        line = json.loads(raw)
        events.append(line)
        if line.get("event") == until:
            return events
    raise AssertionError(f"output ended before {until}: {events}")


async def test_command_line_server_answers_and_stops_on_sigterm() -> None:
    port = free_udp_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "holepunch_devtools.stun_server",
        "--listen",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        started = await asyncio.wait_for(read_events(process.stdout, "stun_server_listening"), 10)
        assert started[-1]["udp_port"] == port
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        reply = await asyncio.to_thread(exchange, ("127.0.0.1", port), bytes(request))
        assert reply is not None
        assert stun.parse_message(reply).transaction_id == request.transaction_id
        process.terminate()
        stopped = await asyncio.wait_for(read_events(process.stdout, "stun_server_stopped"), 10)
        assert stopped[-1]["answered"] == 1
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
