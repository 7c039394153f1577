"""Two in-process workers punch through to each other on loopback, introduced by a small
fake rendezvous (a real WebSocket server): direct paths, a peer-reflexive address, a
forced relay that still carries echoes and later upgrades to direct, direct paths that
outlive the rendezvous, and stray datagrams dropped. Every wait is for an event or a
state, with a deadline."""

from __future__ import annotations

import logging
import os
import socket

from holepunch_protocol import (
    SECRET_BYTES,
    SESSION_ID_BYTES,
    DataKind,
    PeerKind,
    encode_data,
    encode_probe_timestamp,
    seal_peer_datagram,
)

from tests.support.fake_rendezvous import fake_rendezvous
from tests.support.punch_workers import UdpGate, running_workers

A, B = "worker-a", "worker-b"


async def test_direct_punch_echo_status_and_survives_the_rendezvous_going_away() -> None:
    async with (
        fake_rendezvous() as fake,
        running_workers(fake.url, (A, {}), (B, {})) as (a, b),
    ):
        await fake.wait_registered(A, B)
        assert (await a.post(f"/peers/{B}/echo")).status_code == 404  # no session yet
        response = await a.post(f"/peers/{B}/connect")
        # Answered once the introduction is in: 202 while the session is still punching.
        assert response.status_code == 202, response.text
        assert response.json()["peer_id"] == B and response.json()["status"] == "punching"
        assert response.json()["session"]["state"] == "punching"
        assert fake.connect_requests == [(A, B)]

        for worker, peer in ((a, b), (b, a)):
            await worker.log.wait_for_event("peer_introduced", peer_id=peer.worker_id)
            connected = await worker.log.wait_for_event("punch_connected", timeout=5)
            assert (connected["peer_udp_ip"], connected["peer_udp_port"]) == peer.udp_address
            assert connected["rtt_ms"] is not None and connected["rtt_ms"] < 500
        await fake.wait_until(lambda: len(fake.results) == 2, 5, "two punch results")
        for worker, peer in ((a, b), (b, a)):
            [result] = fake.results_of(worker.worker_id)
            assert (result.status.value, result.path.value) == ("connected", "direct")
            assert (result.peer_udp_ip, result.peer_udp_port) == peer.udp_address
            assert result.attempts >= 1 and result.rtt_ms is not None

        session = await a.session_with(B)
        assert session["state"] == "connected" and session["path"] == "direct"
        assert session["role"] == "initiator"
        assert session["peer_address"] == {"ip": b.udp_address[0], "port": b.udp_address[1]}
        assert session["attempts"] >= 1 and session["datagrams_sent"]["direct"] >= 1
        assert session["datagrams_received"]["direct"] >= 1 and session["dropped"] == {}

        echo = await a.post(f"/peers/{B}/echo")
        assert echo.status_code == 200, echo.text
        assert echo.json()["path"] == "direct" and echo.json()["rtt_ms"] < 500
        assert (await b.post(f"/peers/{A}/echo")).json()["path"] == "direct"

        # Datagrams with no session, or the wrong secret, are dropped and counted.
        session_id = bytes.fromhex(session["session_id"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            forged = seal_peer_datagram(
                os.urandom(SECRET_BYTES),
                PeerKind.DATA,
                session_id,
                99,
                encode_data(DataKind.APPLICATION, b"x"),
            )
            unknown_session = seal_peer_datagram(
                os.urandom(SECRET_BYTES),
                PeerKind.PROBE,
                os.urandom(SESSION_ID_BYTES),
                1,
                encode_probe_timestamp(0),
            )
            stranger.sendto(forged, a.udp_address)
            stranger.sendto(unknown_session, a.udp_address)
        # Both are queued on A's socket before the echo below is even sent: once its reply
        # is in, A has dealt with them. The first drop is logged at once, the rest summarised.
        echo = await a.post(f"/peers/{B}/echo")
        assert echo.status_code == 200
        first_drop = await a.log.wait_for_event("peer_datagram_dropped")
        assert first_drop["count"] == 1 and first_drop["level"] == logging.INFO
        status = await a.status()
        assert status["dropped_no_session"] == 1
        assert (await a.session_with(B))["dropped"] == {"bad_mac": 1}
        assert (await a.session_with(B))["peer_address"]["port"] == b.udp_address[1]
        assert status["peer_data_received"] == 0

        # The rendezvous goes away: the direct path does not need it.
        fake.server.close()  # type: ignore[union-attr]
        await a.log.wait_for_event("rendezvous_disconnected")
        # Asking for B again answers the live session; no introduction, so no rendezvous needed.
        again = await a.post(f"/peers/{B}/connect")
        assert again.status_code == 200 and again.json()["status"] == "connected", again.text
        assert (await a.post("/peers/nobody/connect")).status_code == 503
        echo = await a.post(f"/peers/{B}/echo")
        assert echo.status_code == 200 and echo.json()["path"] == "direct"


async def test_peer_reflexive_address_from_connect_to() -> None:
    # A is told a wrong address for B (as when B's NAT is symmetric): B's authenticated
    # probes reach A from B's real address, and A uses that address from then on.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        wrong = blackhole.getsockname()

        async with (
            fake_rendezvous(address_rule=lambda to, peer: wrong if to == A else None) as fake,
            running_workers(fake.url, (A, {}), (B, {"CONNECT_TO": A})) as (a, b),
        ):
            await b.log.wait_for_event("connect_requested", peer_id=A, source="CONNECT_TO")
            changed = await a.log.wait_for_event("punch_path_changed", timeout=5)
            assert (changed["from_ip"], changed["from_port"]) == wrong
            assert (changed["to_ip"], changed["to_port"]) == b.udp_address
            assert changed["reason"] == "peer_reflexive"
            connected = await a.log.wait_for_event("punch_connected", timeout=5)
            assert connected["peer_reflexive"] is True
            await b.log.wait_for_event("punch_connected", timeout=5)
            await fake.wait_until(lambda: len(fake.results) == 2, 5, "two punch results")
            [result] = fake.results_of(A)
            assert (result.peer_udp_ip, result.peer_udp_port) == b.udp_address
            echo = await a.post(f"/peers/{B}/echo")
            assert echo.status_code == 200 and echo.json()["path"] == "direct"
            assert len(fake.connect_requests) == 1  # B has its session: no more requests


async def test_forced_relay_carries_echoes_then_upgrades_to_direct() -> None:
    gate = await UdpGate.start()  # closed: every UDP datagram between them is lost
    try:
        async with (
            fake_rendezvous(address_rule=lambda to, peer: gate.address) as fake,
            running_workers(fake.url, (A, {}), (B, {})) as (a, b),
        ):
            await fake.wait_registered(A, B)
            gate.ends = (a.udp_address, b.udp_address)
            assert (await a.post(f"/peers/{B}/connect")).status_code == 202
            for worker in (a, b):
                failed = await worker.log.wait_for_event("punch_failed", timeout=5)
                assert failed["fallback"] == "relay" and failed["attempts"] >= 10
                started = await worker.log.wait_for_event("relay_started", timeout=5)
                assert started["reason"] == "punch_deadline"
            await fake.wait_until(lambda: len(fake.results) == 2, 5, "two relayed results")
            for worker in (a, b):
                [result] = fake.results_of(worker.worker_id)
                assert (result.status.value, result.path.value) == ("relayed", "relay")
            session = await a.session_with(B)
            assert session["state"] == "relayed" and session["path"] == "relay"
            assert session["peer_address"] is None

            echo = await a.post(f"/peers/{B}/echo")
            assert echo.status_code == 200 and echo.json()["path"] == "relay", echo.text
            assert gate.forwarded == 0 and gate.dropped > 0
            [fake_session] = fake.sessions.values()
            assert fake_session.relayed >= 4

            gate.open = True  # the next upgrade burst gets through
            for worker in (a, b):
                upgraded = await worker.log.wait_for_event("relay_upgraded", timeout=5)
                assert (upgraded["peer_udp_ip"], upgraded["peer_udp_port"]) == gate.address
                # At the first upgrade burst: PUNCH_UPGRADE_INTERVAL_SEC after the deadline.
                assert upgraded["relayed_ms"] > 900
            await fake.wait_until(lambda: len(fake.results) == 4, 5, "the upgraded results")
            for worker in (a, b):
                statuses = [r.status.value for r in fake.results_of(worker.worker_id)]
                assert statuses == ["relayed", "connected"]
            echo = await a.post(f"/peers/{B}/echo")
            assert echo.status_code == 200 and echo.json()["path"] == "direct"
            assert (await a.session_with(B))["state"] == "connected"
    finally:
        gate.close()


async def test_relay_first_relays_at_once_and_pauses_without_the_rendezvous() -> None:
    gate = await UdpGate.start()
    try:
        async with (
            fake_rendezvous(relay_first=True, address_rule=lambda to, peer: gate.address) as fake,
            running_workers(fake.url, (A, {}), (B, {"PUNCH_UPGRADE_INTERVAL_SEC": "60"})) as (a, b),
        ):
            await fake.wait_registered(A, B)
            gate.ends = (a.udp_address, b.udp_address)
            assert (await a.post(f"/peers/{B}/connect")).status_code == 202
            started = await a.log.wait_for_event("relay_started", timeout=3)
            assert started["reason"] == "relay_first" and started["elapsed_ms"] < 900
            echo = await a.post(f"/peers/{B}/echo")
            assert echo.json()["path"] == "relay"
            # Without the rendezvous a relayed path has nowhere to go.
            await fake.close_connections()
            await a.log.wait_for_event("rendezvous_disconnected")
            echo = await a.post(f"/peers/{B}/echo")
            assert echo.status_code == 503, echo.text
            assert echo.json() == {
                "error": "no_path",
                "peer_id": B,
                "state": "relayed",
                "path": "relay",
            }
    finally:
        gate.close()
