"""The rendezvous as served: real uvicorn on a loopback port, real WebSocket clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from holepunch_rendezvous.app import Rendezvous
from holepunch_rendezvous.config import RendezvousConfig
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.rendezvous import RunningRendezvous, eventually, running_rendezvous


@pytest.fixture
async def server() -> AsyncIterator[RunningRendezvous]:
    async with running_rendezvous() as running:
        yield running


async def request(ws: ClientConnection, message: dict[str, Any] | str | bytes) -> dict[str, Any]:
    await ws.send(json.dumps(message) if isinstance(message, dict) else message)
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


def snapshot(rendezvous: Rendezvous) -> dict[str, Any]:
    return {record.worker_id: rendezvous.describe(record) for record in rendezvous.registry}


async def list_workers(server: RunningRendezvous, query: str = "") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        response = await http.get(f"/debug/list_workers{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


UPDATE = {"type": "update_udp_endpoint", "udp_ip": "203.0.113.10", "udp_port": 40000}


async def test_http_routes(server: RunningRendezvous) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        root = await http.get("/")
        health = await http.get("/healthz")
        empty = await http.get("/debug/list_workers")
    assert root.status_code == 200 and "/ws/register/{worker_id}" in root.json()["message"]
    assert health.json() == {"status": "ok"}  # says nothing about workers
    assert empty.json() == {"connected_workers_count": 0, "workers": {}}


async def test_every_message_of_the_protocol(server: RunningRendezvous) -> None:
    async with connect(server.ws_url("worker-1")) as ws:
        echo = await request(ws, {"type": "echo_request", "payload": "ping me"})
        assert echo == {
            "type": "echo_response",
            "original_payload": "ping me",
            "processed_by_rendezvous": "Rendezvous processed: 'PING ME' for worker worker-1",
        }
        details = await request(ws, {"type": "get_my_details"})
        local_port = ws.local_address[1]
        assert details == {
            "type": "my_details_response",
            "worker_id": "worker-1",
            "registered_ip": "127.0.0.1",
            "registered_port": local_port,
            "udp_ip": None,
            "udp_port": None,
            "message": "These are your details as seen by the Rendezvous service.",
        }
        ack = await request(ws, {**UPDATE, "mapping": "endpoint_independent", "local_port": 5000})
        assert ack == {"type": "udp_endpoint_ack", "status": "success"}
        await ws.send(json.dumps({"type": "register_public_ip", "ip": "198.51.100.20"}))
        details = await request(ws, {"type": "get_my_details"})
        assert (details["registered_ip"], details["udp_ip"], details["udp_port"]) == (
            "198.51.100.20",
            "203.0.113.10",
            40000,
        )
        listing = await list_workers(server)
        assert listing["connected_workers_count"] == 1
        entry = listing["workers"]["worker-1"]
        assert {
            k: entry[k]
            for k in (
                "websocket_observed_ip",
                "websocket_observed_port",
                "stun_reported_udp_ip",
                "stun_reported_udp_port",
                "websocket_connected",
                "websocket_raw_state",
                "nat_mapping",
                "local_udp_port",
                "http_reported_public_ip",
            )
        } == {
            "websocket_observed_ip": "127.0.0.1",
            "websocket_observed_port": local_port,
            "stun_reported_udp_ip": "203.0.113.10",
            "stun_reported_udp_port": 40000,
            "websocket_connected": True,
            "websocket_raw_state": 1,
            "nat_mapping": "endpoint_independent",
            "local_udp_port": 5000,
            "http_reported_public_ip": "198.51.100.20",
        }
        assert entry["connected_since"] and entry["udp_endpoint_updated_at"]
    await eventually(lambda: len(server.rendezvous.registry) == 0, what="clean-up on disconnect")
    assert (await list_workers(server))["connected_workers_count"] == 0


BAD_FRAMES: list[tuple[str, str | bytes, dict[str, Any]]] = [
    ("non-json", "hello", {"type": "error", "code": "invalid_json"}),
    ("array", "[1,2,3]", {"type": "error", "code": "not_an_object"}),
    ("null", "null", {"type": "error", "code": "not_an_object"}),
    ("no type", "{}", {"type": "error", "code": "missing_type"}),
    ("unknown type", '{"type":"peer_introduction"}', {"type": "error", "code": "unknown_type"}),
    (
        "port as string",
        json.dumps({**UPDATE, "udp_port": "40000"}),
        {"type": "udp_endpoint_ack", "status": "error"},
    ),
    (
        "port zero",
        json.dumps({**UPDATE, "udp_port": 0}),
        {"type": "udp_endpoint_ack", "status": "error"},
    ),
    (
        "port too big",
        json.dumps({**UPDATE, "udp_port": 70000}),
        {"type": "udp_endpoint_ack", "status": "error"},
    ),
    (
        "port float",
        json.dumps({**UPDATE, "udp_port": 4.5}),
        {"type": "udp_endpoint_ack", "status": "error"},
    ),
    (
        "port bool",
        json.dumps({**UPDATE, "udp_port": True}),
        {"type": "udp_endpoint_ack", "status": "error"},
    ),
    (
        "ip hostname",
        json.dumps({**UPDATE, "udp_ip": "evil.example"}),
        {"type": "udp_endpoint_ack", "status": "error"},
    ),
    (
        "ip missing",
        json.dumps({"type": "update_udp_endpoint", "udp_port": 4}),
        {"type": "udp_endpoint_ack", "status": "error"},
    ),
    (
        "public ip bad",
        '{"type":"register_public_ip","ip":"x"}',
        {"type": "error", "code": "invalid_field"},
    ),
    (
        "echo payload int",
        '{"type":"echo_request","payload":1}',
        {"type": "error", "code": "invalid_field"},
    ),
    ("binary frame", b'{"type":"get_my_details"}', {"type": "error", "code": "binary_frame"}),
    (
        "oversized",
        json.dumps({"type": "echo_request", "payload": "x" * 20000}),
        {"type": "error", "code": "frame_too_large"},
    ),
    (
        "lone surrogate",
        '{"type":"echo_request","payload":"\\ud800"}',
        {"type": "error", "code": "invalid_field"},
    ),
    (
        "broadcast ip",
        json.dumps({**UPDATE, "udp_ip": "255.255.255.255"}),
        {"type": "udp_endpoint_ack", "status": "error"},
    ),
    ("deep nesting", "[" * 8000 + "]" * 8000, {"type": "error", "code": "invalid_json"}),
]


@pytest.mark.parametrize(
    ("frame", "expected"), [pytest.param(f, e, id=i) for i, f, e in BAD_FRAMES]
)
async def test_bad_input_gets_a_clear_error_and_changes_nothing(
    server: RunningRendezvous, frame: str | bytes, expected: dict[str, Any]
) -> None:
    async with (
        connect(server.ws_url("victim")) as victim,
        connect(server.ws_url("bystander")) as bystander,
    ):
        assert (await request(victim, UPDATE))["status"] == "success"
        assert (await request(bystander, {**UPDATE, "udp_port": 40001}))["status"] == "success"
        before = snapshot(server.rendezvous)

        reply = await request(victim, frame)

        assert {k: reply[k] for k in expected} == expected
        assert isinstance(reply.get("detail"), str) and reply["detail"]
        assert snapshot(server.rendezvous) == before
        # The connection that sent it and its neighbour both still work.
        for ws, name in ((victim, "victim"), (bystander, "bystander")):
            echo = await request(ws, {"type": "echo_request", "payload": "still here"})
            assert echo["processed_by_rendezvous"].endswith(f"for worker {name}")


async def test_frame_above_the_transport_limit_closes_only_that_connection(
    server: RunningRendezvous,
) -> None:
    async with connect(server.ws_url("bystander")) as bystander:
        await request(bystander, UPDATE)
        before = snapshot(server.rendezvous)
        async with connect(server.ws_url("flooder"), max_size=None) as flooder:
            await flooder.send("x" * (200 * 1024))
            with pytest.raises(ConnectionClosed) as closed:
                await flooder.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await eventually(lambda: server.rendezvous.registry.get("flooder") is None)
        assert snapshot(server.rendezvous) == before
        assert (await request(bystander, {"type": "get_my_details"}))["udp_port"] == 40000


@pytest.mark.parametrize("worker_id", ["x" * 65, "-starts-with-dash", "has%20space", "semi;colon"])
async def test_invalid_worker_id_is_refused_with_a_reason(
    server: RunningRendezvous, worker_id: str
) -> None:
    async with connect(server.ws_url(worker_id)) as ws:
        reply = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert reply["type"] == "error" and reply["code"] == "invalid_worker_id"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert len(server.rendezvous.registry) == 0


async def test_duplicate_worker_id_newest_wins(server: RunningRendezvous) -> None:
    old = await connect(server.ws_url("dup"))
    await request(old, UPDATE)
    async with connect(server.ws_url("dup")) as new:
        with pytest.raises(ConnectionClosed) as closed:
            await old.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            4409,
            "replaced by a newer connection for this worker_id",
        )
        await old.wait_closed()
        # The old connection's clean-up has run; the new entry is still there.
        await eventually(lambda: len(server.rendezvous.connections) == 1)
        record = server.rendezvous.registry.get("dup")
        assert record is not None
        assert record.observed_port == new.local_address[1]
        assert record.udp_endpoint is None  # the old connection's endpoint went with it
        assert (await request(new, UPDATE))["status"] == "success"
        listing = await list_workers(server)
        assert listing["workers"]["dup"]["websocket_connected"] is True
    await eventually(lambda: server.rendezvous.registry.get("dup") is None)


async def test_pagination(server: RunningRendezvous) -> None:
    clients = [await connect(server.ws_url(f"w{n}")) for n in range(5)]
    try:
        full = await list_workers(server)
        assert sorted(full["workers"]) == [f"w{n}" for n in range(5)]
        assert "next_cursor" not in full  # the original shape, unchanged
        seen: list[str] = []
        query = "?limit=2"
        while True:
            page = await list_workers(server, query)
            assert page["connected_workers_count"] == 5
            assert len(page["workers"]) <= 2
            seen.extend(page["workers"])
            if page["next_cursor"] is None:
                break
            query = f"?limit=2&cursor={page['next_cursor']}"
        assert seen == [f"w{n}" for n in range(5)]
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            for bad in ("0", "-1", "abc", "1001"):
                response = await http.get(f"/debug/list_workers?limit={bad}")
                assert response.status_code == 400
                assert "limit" in response.json()["detail"]
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize(
    ("trust", "trusted", "header", "observed"),
    [
        (False, "127.0.0.1/32", "203.0.113.7", "127.0.0.1"),
        (True, "127.0.0.1/32", "203.0.113.7", "203.0.113.7"),
        # A client-written entry on the left is ignored: the rightmost untrusted hop counts.
        (True, "127.0.0.1/32,169.254.0.0/16", "6.6.6.6, 203.0.113.7, 169.254.1.1", "203.0.113.7"),
        (True, "10.0.0.0/8", "203.0.113.7", "127.0.0.1"),
    ],
)
async def test_x_forwarded_for_only_when_trusted(
    trust: bool, trusted: str, header: str, observed: str
) -> None:
    config = RendezvousConfig.from_env(
        {"TRUST_PROXY_HEADERS": str(trust), "TRUSTED_PROXIES": trusted, "AUTH_MODE": "none"}
    )
    async with running_rendezvous(config) as server:
        async with connect(
            server.ws_url("proxied"), additional_headers={"X-Forwarded-For": header}
        ) as ws:
            details = await request(ws, {"type": "get_my_details"})
        assert details["registered_ip"] == observed
