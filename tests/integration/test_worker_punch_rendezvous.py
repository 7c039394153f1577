"""Workers punching through the real rendezvous process (holepunch_rendezvous): a direct
path where one side registered an endpoint nobody listens on (the other learns its real
address from its probes), and a relayed path when neither endpoint works, with the
sessions and results the rendezvous shows on /debug/sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from holepunch_devtools.processes import ServiceProcess, start_service

from tests.support.ports import free_tcp_port
from tests.support.punch_workers import LyingStunServer, running_workers

A, B = "real-a", "real-b"


@asynccontextmanager
async def rendezvous_process() -> AsyncIterator[tuple[ServiceProcess, str]]:
    port = free_tcp_port()
    service = await start_service(
        "holepunch_rendezvous",
        {"PORT": str(port), "HOST": "127.0.0.1", "AUTH_MODE": "none", "DEBUG_ENDPOINTS": "1"},
    )
    try:
        await service.wait_for_event("server_started", port=port)
        yield service, f"http://127.0.0.1:{port}"
    finally:
        assert await service.stop() == 0


async def debug_sessions(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        body: dict[str, Any] = (await client.get(f"{url}/debug/sessions")).json()
        return body


async def test_direct_through_the_real_rendezvous_with_a_peer_reflexive_address() -> None:
    async with (
        rendezvous_process() as (rendezvous, url),
        LyingStunServer.running(shift=1000) as lying_stun,
        running_workers(url, (A, {"STUN_SERVERS": lying_stun}), (B, {})) as (a, b),
    ):
        await a.log.wait_for_event("endpoint_ack", status="success")
        await b.log.wait_for_event("endpoint_ack", status="success")
        response = await b.post(f"/peers/{A}/connect")
        assert response.status_code == 202
        # B was given A's registered (wrong) endpoint; A's probes reach B from A's real one.
        changed = await b.log.wait_for_event("punch_path_changed", timeout=5)
        assert changed["reason"] == "peer_reflexive"
        assert (changed["to_ip"], changed["to_port"]) == a.udp_address
        assert changed["from_port"] == a.udp_address[1] + 1000
        for worker in (a, b):
            await worker.log.wait_for_event("punch_connected", timeout=5)

        echo = await b.post(f"/peers/{A}/echo")
        assert echo.status_code == 200 and echo.json()["path"] == "direct", echo.text

        for worker_id in (A, B):
            logged = await rendezvous.wait_for_event("punch_result", worker_id=worker_id)
            assert logged["status"] == "connected" and logged["rtt_ms"] is not None
        [session] = (await debug_sessions(url))["active"].values()
        assert (session["initiator"], session["responder"]) == (B, A)
        assert session["relay_first"] is False
        assert set(session["results"]) == {A, B}
        assert session["results"][B]["status"] == "connected"
        assert session["results"][B]["peer_udp_port"] == a.udp_address[1]
        assert session["results"][A]["path"] == "direct"


async def test_relay_through_the_real_rendezvous_when_no_endpoint_works() -> None:
    async with (
        rendezvous_process() as (rendezvous, url),
        LyingStunServer.running(shift=1000) as lying_stun,
        running_workers(
            url, (A, {"STUN_SERVERS": lying_stun}), (B, {"STUN_SERVERS": lying_stun})
        ) as (a, b),
    ):
        await a.log.wait_for_event("endpoint_ack", status="success")
        await b.log.wait_for_event("endpoint_ack", status="success")
        assert (await a.post(f"/peers/{B}/connect")).status_code == 202
        for worker in (a, b):
            await worker.log.wait_for_event("relay_started", timeout=5)
        echo = await a.post(f"/peers/{B}/echo")
        assert echo.status_code == 200 and echo.json()["path"] == "relay", echo.text
        echo = await b.post(f"/peers/{A}/echo")
        assert echo.status_code == 200 and echo.json()["path"] == "relay", echo.text

        for worker_id in (A, B):
            await rendezvous.wait_for_event("punch_result", worker_id=worker_id, status="relayed")
        [session] = (await debug_sessions(url))["active"].values()
        assert session["relayed_datagrams"] >= 8 and session["relay_refused"] == 0
        assert {w: r["status"] for w, r in session["results"].items()} == {
            A: "relayed",
            B: "relayed",
        }
        assert (await a.session_with(B))["datagrams_received"]["relay"] >= 2
