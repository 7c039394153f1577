"""Slow clients on the real server: slowloris upgrades and silent WebSockets are closed
within their deadlines and counted, while a real worker registers normally."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from holepunch_rendezvous.config import RendezvousConfig
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.rendezvous import RunningRendezvous, eventually, running_rendezvous

HANDSHAKE_TIMEOUT_SEC = 1.5
FIRST_MESSAGE_TIMEOUT_SEC = 1.0
# Generous on a busy machine, and still far below the time the slow clients would need.
MARGIN_SEC = 2.0
SLOW_CLIENTS = 50
BYTE_INTERVAL_SEC = 0.25


@pytest.fixture
async def server() -> AsyncIterator[RunningRendezvous]:
    config = RendezvousConfig(
        host="127.0.0.1",
        debug_endpoints=True,
        handshake_timeout_sec=HANDSHAKE_TIMEOUT_SEC,
        first_message_timeout_sec=FIRST_MESSAGE_TIMEOUT_SEC,
    )
    async with running_rendezvous(config) as running:
        yield running


def upgrade_request(port: int, worker_id: str) -> bytes:
    return (
        f"GET /ws/register/{worker_id} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def trickle(port: int, request: bytes, prefix: bytes = b"") -> float:
    """Send `prefix` at once, then `request` one byte at a time; the seconds the server
    took to close the connection after the trickle began (inf if it never did)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(prefix)
        started = loop.time()
        closed = asyncio.ensure_future(_read_until_eof(reader))
        for byte in request:
            writer.write(bytes([byte]))
            done, _ = await asyncio.wait({closed}, timeout=BYTE_INTERVAL_SEC)
            if done:
                return loop.time() - started
        return float("inf")
    finally:
        writer.close()


async def _read_until_eof(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(4096):
            pass
    except ConnectionError:
        pass


async def slow_clients_closed(server: RunningRendezvous) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        counts: dict[str, int] = (await http.get("/debug/registry")).json()["slow_clients_closed"]
    return counts


async def test_slowloris_upgrades_are_closed_while_a_worker_registers(
    server: RunningRendezvous,
) -> None:
    request = upgrade_request(server.port, "slow")
    assert len(request) * BYTE_INTERVAL_SEC > 10 * HANDSHAKE_TIMEOUT_SEC
    attack = [asyncio.ensure_future(trickle(server.port, request)) for _ in range(SLOW_CLIENTS)]
    # A real worker connects while the attack is under way, and is served normally.
    async with connect(server.ws_url("real-worker")) as worker:
        await worker.send(
            json.dumps({"type": "update_udp_endpoint", "udp_ip": "203.0.113.9", "udp_port": 9})
        )
        assert json.loads(await worker.recv()) == {"type": "udp_endpoint_ack", "status": "success"}
        closed_after = await asyncio.gather(*attack)
        assert max(closed_after) < HANDSHAKE_TIMEOUT_SEC + MARGIN_SEC
        # Past the first-message deadline too: it stays connected.
        await worker.send(json.dumps({"type": "echo_request", "payload": "still here"}))
        assert json.loads(await worker.recv())["type"] == "echo_response"
    assert (await slow_clients_closed(server))["handshake_timeouts"] == SLOW_CLIENTS
    assert "slow" not in server.rendezvous.registry


async def test_a_kept_alive_connection_trickling_its_next_request_is_closed(
    server: RunningRendezvous,
) -> None:
    first = f"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    closed_after = await trickle(server.port, upgrade_request(server.port, "slow"), first)
    assert closed_after < HANDSHAKE_TIMEOUT_SEC + MARGIN_SEC
    assert (await slow_clients_closed(server))["handshake_timeouts"] == 1


async def test_a_websocket_that_sends_nothing_is_closed(server: RunningRendezvous) -> None:
    loop = asyncio.get_running_loop()
    async with connect(server.ws_url("silent")) as silent:
        opened = loop.time()
        with pytest.raises(ConnectionClosed) as closed:
            await silent.recv()
        waited = loop.time() - opened
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
    assert FIRST_MESSAGE_TIMEOUT_SEC - 0.1 <= waited < FIRST_MESSAGE_TIMEOUT_SEC + MARGIN_SEC
    await eventually(lambda: "silent" not in server.rendezvous.registry, what="silent removed")
    assert (await slow_clients_closed(server)) == {
        "handshake_timeouts": 0,
        "first_message_timeouts": 1,
    }


async def test_an_idle_kept_alive_connection_is_not_a_slow_client(
    server: RunningRendezvous,
) -> None:
    request = f"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        await served(reader, writer, request)
        # Idle past the handshake deadline (uvicorn's keep-alive timeout is 5 s): the
        # deadline runs from a request's first byte, not from the last response.
        await asyncio.sleep(HANDSHAKE_TIMEOUT_SEC + 0.5)
        await served(reader, writer, request)
    finally:
        writer.close()
    assert (await slow_clients_closed(server))["handshake_timeouts"] == 0


async def served(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> None:
    writer.write(request)
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(len(b'{"status":"ok"}'))
