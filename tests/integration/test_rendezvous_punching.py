"""Introductions and relaying through a real rendezvous with real WebSocket clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.rendezvous import RunningRendezvous, eventually, running_rendezvous


@pytest.fixture
async def server() -> AsyncIterator[RunningRendezvous]:
    async with running_rendezvous() as running:
        yield running


async def registered(server: RunningRendezvous, worker_id: str, port: int) -> ClientConnection:
    ws = await connect(server.ws_url(worker_id))
    await ws.send(
        json.dumps({"type": "update_udp_endpoint", "udp_ip": "203.0.113.9", "udp_port": port})
    )
    assert json.loads(await ws.recv())["status"] == "success"
    return ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def test_connect_request_introduces_both_and_relay_crosses(server: RunningRendezvous) -> None:
    a = await registered(server, "a", 4001)
    b = await registered(server, "b", 4002)
    try:
        await a.send(json.dumps({"type": "connect_request", "peer_id": "b"}))
        to_a, to_b = await receive(a), await receive(b)
        assert to_a["type"] == to_b["type"] == "peer_introduction"
        assert (to_a["peer_id"], to_a["role"], to_a["peer_udp_port"]) == ("b", "initiator", 4002)
        assert (to_b["peer_id"], to_b["role"], to_b["peer_udp_port"]) == ("a", "responder", 4001)
        assert to_a["session_id"] == to_b["session_id"] and to_a["secret"] == to_b["secret"]

        relay = {"type": "relay_datagram", "session_id": to_a["session_id"], "data": "aGVsbG8="}
        await a.send(json.dumps(relay))
        assert await receive(b) == relay
        await b.send(json.dumps(relay))
        assert await receive(a) == relay

        result = {
            "type": "punch_result",
            "session_id": to_a["session_id"],
            "peer_id": "b",
            "status": "relayed",
            "path": "relay",
            "attempts": 25,
            "elapsed_ms": 5000.0,
        }
        await a.send(json.dumps(result))
        async with httpx.AsyncClient(base_url=server.http_url) as http:

            async def result_recorded() -> bool:
                body = (await http.get("/debug/sessions")).json()
                session = body["active"].get(to_a["session_id"], {})
                return "a" in session.get("results", {})

            await eventually(result_recorded)
            sessions = (await http.get("/debug/sessions")).json()
        session = sessions["active"][to_a["session_id"]]
        assert (session["initiator"], session["responder"]) == ("a", "b")
        assert session["relayed_datagrams"] == 2
        assert session["results"]["a"]["status"] == "relayed"
        assert "secret" not in json.dumps(sessions)

        await b.close()
        await eventually(lambda: len(server.rendezvous.sessions) == 0, what="session ended")
        await a.send(json.dumps(relay))
        assert (await receive(a))["code"] == "unknown_session"
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    ("peer", "code"), [("nobody", "peer_not_found"), ("a", "self_introduction")]
)
async def test_refused_introduction_keeps_the_connection(
    server: RunningRendezvous, peer: str, code: str
) -> None:
    a = await registered(server, "a", 4001)
    try:
        await a.send(json.dumps({"type": "connect_request", "peer_id": peer}))
        reply = await receive(a)
        assert (reply["type"], reply["code"]) == ("error", code)
        await a.send(json.dumps({"type": "echo_request", "payload": "ok"}))
        assert (await receive(a))["type"] == "echo_response"
        assert len(server.rendezvous.sessions) == 0
    finally:
        await a.close()


async def test_operator_introduces_two_workers_over_http(server: RunningRendezvous) -> None:
    a = await registered(server, "a", 4001)
    b = await registered(server, "b", 4002)
    try:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            ok = await http.post("/admin/introduce", json={"initiator": "b", "responder": "a"})
            missing = await http.post("/admin/introduce", json={"initiator": "b", "responder": "x"})
            bad = await http.post("/admin/introduce", content=b"[1]")
        assert ok.status_code == 200
        to_b, to_a = await receive(b), await receive(a)
        assert to_b["session_id"] == to_a["session_id"] == ok.json()["session_id"]
        assert (to_b["role"], to_a["role"]) == ("initiator", "responder")
        assert (missing.status_code, missing.json()["error"]) == (404, "peer_not_found")
        assert bad.status_code == 400
    finally:
        await a.close()
        await b.close()
