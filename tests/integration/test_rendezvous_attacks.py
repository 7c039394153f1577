"""Issue 11's reflection and budget-starvation attacks, run against the real rendezvous
(uvicorn on a loopback port) with real WebSocket attackers and in-process workers with real
UDP sockets, scaled for a test run (FAST_PUNCHING: 1 s punch deadline, 0.05 s interval).

Reflection: every attacker reports a third party's address (a UDP socket this test owns)
as its endpoint and asks to be introduced to the victim. Before issue 11 each introduction
made the victim probe the third party ~30 times (25,529 datagrams in 20 s for 200
attackers). Now the third party gets at most PUNCH_PROBES_PER_ADDRESS_PER_MIN (60) in any
minute, however many attackers: the victim probes one address from one budget.

Starvation: attackers made sessions with the victim and flood it with relayed probes,
which the victim answers; those answers are charged to the attackers' sessions, never to
the victim's control budget, so a real peer's relayed echoes keep succeeding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from holepunch_protocol import (
    PeerKind,
    RelayDatagram,
    encode_message,
    encode_probe_timestamp,
    seal_peer_datagram,
)
from holepunch_worker.probe_budget import DEFAULT_PROBE_LIMITS
from websockets.asyncio.client import ClientConnection, connect

from tests.support.punch_workers import LyingStunServer, running_workers
from tests.support.rendezvous import RunningRendezvous, running_rendezvous

VICTIM, FRIEND = "victim", "friend"


class CountingUdp(asyncio.DatagramProtocol):
    """The third party: counts what reaches it, answers nothing."""

    def __init__(self) -> None:
        self.received = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1

    @classmethod
    @asynccontextmanager
    async def running(cls) -> AsyncIterator[tuple[CountingUdp, tuple[str, int]]]:
        transport, counter = await asyncio.get_running_loop().create_datagram_endpoint(
            cls, local_addr=("127.0.0.1", 0)
        )
        try:
            yield counter, transport.get_extra_info("sockname")[:2]
        finally:
            transport.close()


async def attacker(
    stack: AsyncExitStack, server: RunningRendezvous, worker_id: str, endpoint: tuple[str, int]
) -> ClientConnection:
    """A raw client registered with `endpoint` as its UDP endpoint."""
    websocket = await stack.enter_async_context(connect(server.ws_url(worker_id)))
    update = {"type": "update_udp_endpoint", "udp_ip": endpoint[0], "udp_port": endpoint[1]}
    await websocket.send(json.dumps(update))
    ack = json.loads(await websocket.recv())
    assert ack == {"type": "udp_endpoint_ack", "status": "success"}, ack
    return websocket


async def debug_registry(server: RunningRendezvous) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        body: dict[str, Any] = (await client.get(f"{server.http_url}/debug/registry")).json()
        return body


async def test_reflection_many_attackers_send_a_third_party_one_probe_budget() -> None:
    attackers_count = 50
    async with (
        CountingUdp.running() as (third_party, third_party_address),
        running_rendezvous() as server,
        running_workers(server.http_url, (VICTIM, {})) as [victim],
        AsyncExitStack() as stack,
    ):
        await victim.log.wait_for_event("endpoint_ack", status="success")
        registered = server.rendezvous.registry.get(VICTIM)
        assert registered is not None
        attackers = [
            await attacker(stack, server, f"attacker-{n}", third_party_address)
            for n in range(attackers_count)
        ]
        for websocket in attackers:
            await websocket.send(json.dumps({"type": "connect_request", "peer_id": VICTIM}))
        replies = [json.loads(await websocket.recv()) for websocket in attackers]
        introduced = [r["session_id"] for r in replies if r["type"] == "peer_introduction"]
        refused = [r["code"] for r in replies if r["type"] == "error"]
        per_minute = server.rendezvous.config.caps.introductions_per_target_per_min
        assert len(introduced) == per_minute
        assert refused == ["introduction_rate_limited"] * (attackers_count - len(introduced))

        # Every session the victim started ends (no answer, no relay confirmed): after
        # that it sends the third party nothing more.
        await victim.log.wait_for(
            lambda: {e["session_id"] for e in victim.log.named("punch_session_ended")}.issuperset(
                introduced
            ),
            timeout=30,
            what="every attacker session ended",
        )
        budget = DEFAULT_PROBE_LIMITS.probes_per_address_per_min
        assert 0 < third_party.received <= budget
        status = await victim.status()
        assert status["probe_budget"]["probes_refused"] > 0
        assert victim.log.named("punch_probes_limited")
        assert (await debug_registry(server))["introductions_refused"] == {
            "introduction_rate_limited": attackers_count - len(introduced)
        }
        # The victim was never disturbed: the same connection, still registered.
        assert server.rendezvous.registry.get(VICTIM) == registered
        assert not victim.log.named("rendezvous_disconnected")


async def flood_relayed_probes(
    websocket: ClientConnection, introduction: dict[str, Any], per_second: int
) -> None:
    """Authentic relayed probes (the attacker knows the session secret), which the victim
    answers; the rendezvous's answers to the attacker are read and dropped."""
    secret, session_key = (
        bytes.fromhex(introduction["secret"]),
        bytes.fromhex(introduction["session_id"]),
    )

    async def drain() -> None:
        with contextlib.suppress(Exception):
            async for _ in websocket:
                pass

    drainer = asyncio.create_task(drain())
    sequence = 0
    try:
        while True:
            for _ in range(per_second // 10):
                datagram = seal_peer_datagram(
                    secret, PeerKind.PROBE, session_key, sequence, encode_probe_timestamp(0)
                )
                sequence += 1
                frame = encode_message(RelayDatagram(introduction["session_id"], datagram))
                await websocket.send(frame)
            await asyncio.sleep(0.1)  # pacing the flood, not waiting for anything
    finally:
        drainer.cancel()


async def test_starvation_relay_floods_on_attacker_sessions_leave_the_victim_its_budget() -> None:
    attackers_count, per_second, echoes = 5, 100, 40
    async with (
        running_rendezvous() as server,
        LyingStunServer.running(shift=1000) as lying_stun,
        running_workers(
            server.http_url,
            (VICTIM, {"STUN_SERVERS": lying_stun}),
            (FRIEND, {"STUN_SERVERS": lying_stun}),
        ) as [victim, friend],
        AsyncExitStack() as stack,
    ):
        for worker in (victim, friend):
            await worker.log.wait_for_event("endpoint_ack", status="success")
        assert (await friend.post(f"/peers/{VICTIM}/connect")).status_code == 202
        for worker in (victim, friend):
            await worker.log.wait_for_event("relay_started", timeout=10)

        introductions = []
        for n in range(attackers_count):
            websocket = await attacker(stack, server, f"attacker-{n}", ("192.0.2.1", 9000 + n))
            await websocket.send(json.dumps({"type": "connect_request", "peer_id": VICTIM}))
            introduction = json.loads(await websocket.recv())
            assert introduction["type"] == "peer_introduction", introduction
            introductions.append((websocket, introduction))
        floods = [
            asyncio.create_task(flood_relayed_probes(websocket, introduction, per_second))
            for websocket, introduction in introductions
        ]
        started = time.monotonic()
        try:
            results = [(await friend.post(f"/peers/{VICTIM}/echo")) for _ in range(echoes)]
        finally:
            for flood in floods:
                flood.cancel()
            await asyncio.gather(*floods, return_exceptions=True)
        elapsed = time.monotonic() - started

        succeeded = [r for r in results if r.status_code == 200 and r.json()["path"] == "relay"]
        assert len(succeeded) >= 0.95 * echoes, [r.text for r in results if r not in succeeded]
        # The attack was real: the victim answered far more relayed probes than its
        # control budget (MAX_MESSAGES_PER_SEC, bursts of twice that) would have allowed.
        status = await victim.status()
        answered = sum(
            s["datagrams_sent"]["relay"]
            for s in status["sessions"] + status["ended_sessions"]
            if s["peer_id"].startswith("attacker-")
        )
        control_budget = server.rendezvous.config.max_messages_per_sec
        assert answered > control_budget * (elapsed + 2), (answered, elapsed)
        # ...and none of the victim's own messages was refused.
        refusals = [e for e in victim.log.named("rendezvous_error") if e["code"] == "rate_limited"]
        assert not refusals
        # The victim's answers beyond the attackers' budget were refused: counted, and
        # logged at most once per 10 s, not once each.
        assert status["relay_refused"] > 0
        logged = [e for e in victim.log.named("rendezvous_error") if e["code"] != "rate_limited"]
        assert 1 <= len(logged) <= 1 + elapsed / 10
        assert server.rendezvous.registry.get(VICTIM) is not None
