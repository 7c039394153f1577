"""Introductions, punch results and relaying at the rendezvous, with no sockets."""

from __future__ import annotations

import json
import logging

from holepunch_protocol import (
    ErrorMessage,
    MappingBehaviour,
    PeerIntroduction,
    PeerRole,
    RelayDatagram,
    UpdateUdpEndpoint,
    encode_message,
)
from holepunch_rendezvous.budgets import TokenBucket
from holepunch_rendezvous.handler import handle_text_frame, introduce
from holepunch_rendezvous.punch_sessions import PunchSessionTable, RelayLimits
from holepunch_rendezvous.registry import Registry


def two_workers(mapping_b: MappingBehaviour = MappingBehaviour.ENDPOINT_INDEPENDENT) -> Registry:
    registry = Registry()
    for n, (worker_id, mapping) in enumerate(
        [("a", MappingBehaviour.ENDPOINT_INDEPENDENT), ("b", mapping_b)], start=1
    ):
        registry.connect(worker_id, n, "127.0.0.1", 1000 + n, now=0.0)
        registry.update_udp_endpoint(
            worker_id, n, UpdateUdpEndpoint(f"203.0.113.{n}", 4000 + n, mapping), now=0.0
        )
    return registry


def test_introduction_tells_both_workers_the_same_session_and_secret() -> None:
    sessions = PunchSessionTable()
    outcome = introduce(two_workers(), sessions, "a", "b", now=1.0)
    assert outcome.reply is None
    to_a, to_b = outcome.deliveries
    assert isinstance(to_a.message, PeerIntroduction)
    assert isinstance(to_b.message, PeerIntroduction)
    assert (to_a.worker_id, to_a.message.peer_id, to_a.message.role) == (
        "a",
        "b",
        PeerRole.INITIATOR,
    )
    assert (to_b.worker_id, to_b.message.peer_id, to_b.message.role) == (
        "b",
        "a",
        PeerRole.RESPONDER,
    )
    assert (to_a.message.peer_udp_ip, to_a.message.peer_udp_port) == ("203.0.113.2", 4002)
    assert (to_b.message.peer_udp_ip, to_b.message.peer_udp_port) == ("203.0.113.1", 4001)
    assert to_a.message.session_id == to_b.message.session_id
    assert to_a.message.secret == to_b.message.secret and len(to_a.message.secret) == 64
    assert not to_a.message.relay_first
    assert outcome.event is not None and outcome.event.name == "peer_introduced"
    assert len(sessions) == 1


def test_an_endpoint_dependent_side_starts_on_the_relay() -> None:
    outcome = introduce(
        two_workers(MappingBehaviour.ENDPOINT_DEPENDENT), PunchSessionTable(), "a", "b", now=1.0
    )
    assert all(
        isinstance(d.message, PeerIntroduction) and d.message.relay_first
        for d in outcome.deliveries
    )


def test_refused_introductions_say_why_and_create_nothing() -> None:
    registry = two_workers()
    registry.connect("c", 3, None, None, now=0.0)  # connected, no endpoint yet
    sessions = PunchSessionTable()
    for initiator, responder, code in [
        ("a", "a", "self_introduction"),
        ("a", "zz", "peer_not_found"),
        ("a", "c", "peer_has_no_endpoint"),
        ("c", "a", "no_endpoint"),
    ]:
        outcome = introduce(registry, sessions, initiator, responder, now=1.0)
        assert isinstance(outcome.reply, ErrorMessage) and outcome.reply.code == code
        assert outcome.deliveries == ()
        assert outcome.event is not None
        assert (outcome.event.name, outcome.event.level) == (
            "introduction_rejected",
            logging.WARNING,
        )
    assert len(sessions) == 0


def relay_frame(session_id: str, data: bytes = b"sealed") -> str:
    return encode_message(RelayDatagram(session_id=session_id, data=data))


def test_relay_goes_to_the_other_member_only_and_is_rate_limited() -> None:
    registry = two_workers()
    registry.connect("c", 3, None, None, now=0.0)
    sessions = PunchSessionTable(RelayLimits(datagrams_per_sec=2, bytes_per_sec=1000))
    session_id = introduce(registry, sessions, "a", "b", now=0.0).deliveries[0].message.session_id  # type: ignore[union-attr]

    forwarded = handle_text_frame(registry, sessions, "a", 1, relay_frame(session_id), now=0.0)
    assert [(d.worker_id, d.message) for d in forwarded.deliveries] == [
        ("b", RelayDatagram(session_id, b"sealed"))
    ]
    stranger = handle_text_frame(registry, sessions, "c", 3, relay_frame(session_id), now=0.0)
    assert isinstance(stranger.reply, ErrorMessage) and stranger.reply.code == "unknown_session"
    assert stranger.deliveries == ()

    handle_text_frame(registry, sessions, "b", 2, relay_frame(session_id), now=0.0)
    limited = handle_text_frame(registry, sessions, "b", 2, relay_frame(session_id), now=0.0)
    assert isinstance(limited.reply, ErrorMessage) and limited.reply.code == "relay_rate_limited"
    assert limited.deliveries == ()
    later = handle_text_frame(registry, sessions, "b", 2, relay_frame(session_id), now=0.5)
    assert len(later.deliveries) == 1  # the bucket refilled
    session = sessions.get(session_id)
    assert session is not None
    assert (session.relayed_datagrams, session.relay_refused) == (3, 1)


def test_punch_results_are_kept_per_worker_and_sessions_end_with_a_member() -> None:
    registry = two_workers()
    sessions = PunchSessionTable()
    session_id = introduce(registry, sessions, "a", "b", now=0.0).deliveries[0].message.session_id  # type: ignore[union-attr]
    result = {
        "type": "punch_result",
        "session_id": session_id,
        "peer_id": "b",
        "status": "connected",
        "path": "direct",
        "attempts": 2,
        "elapsed_ms": 12.5,
        "rtt_ms": 1.5,
    }
    outcome = handle_text_frame(registry, sessions, "a", 1, json.dumps(result), now=1.0)
    assert outcome.event is not None and outcome.event.name == "punch_result"
    assert outcome.event.fields["status"] == "connected"
    wrong_peer = handle_text_frame(
        registry, sessions, "a", 1, json.dumps({**result, "peer_id": "a"}), now=1.0
    )
    assert isinstance(wrong_peer.reply, ErrorMessage)
    session = sessions.get(session_id)
    assert session is not None and set(session.results) == {"a"}

    assert [s.session_id for s in sessions.end_sessions_of("b", now=2.0)] == [session_id]
    assert sessions.get(session_id) is None and len(sessions) == 0
    assert [s.ended_at for s in sessions.ended()] == [2.0]
    assert sessions.end_sessions_of("a", now=3.0) == []


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    assert [bucket.allow(1, 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.allow(1, 0.1)
    assert not bucket.allow(6, 100.0)  # never more than the burst


def test_a_new_introduction_of_the_same_pair_replaces_the_old_session() -> None:
    sessions = PunchSessionTable()
    first = sessions.create("a", "b", now=0.0, relay_first=False)
    other = sessions.create("a", "c", now=0.5, relay_first=False)
    second = sessions.create("b", "a", now=1.0, relay_first=False)
    assert sessions.get(first.session_id) is None and first.ended_at == 1.0
    assert {s.session_id for s in sessions.active()} == {other.session_id, second.session_id}
    assert [s.session_id for s in sessions.end_sessions_of("a", now=2.0)] != []
    assert len(sessions) == 0
    assert {s.session_id for s in sessions.ended()} == {
        first.session_id,
        other.session_id,
        second.session_id,
    }
