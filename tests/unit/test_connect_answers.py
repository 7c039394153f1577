"""A connect_request's `request_id` comes back in the rendezvous's answer (issue 12): in
the error that refuses it, or in the initiator's introduction. An additive change: a
request without it is answered as before, without the field."""

from __future__ import annotations

import json

import pytest
from holepunch_protocol import (
    ConnectRequest,
    ErrorMessage,
    PeerIntroduction,
    ProtocolError,
    UpdateUdpEndpoint,
    decode_client_message,
    decode_server_message,
    encode_message,
)
from holepunch_rendezvous.handler import handle_message, handle_text_frame
from holepunch_rendezvous.policy import IntroductionPolicy
from holepunch_rendezvous.punch_sessions import PunchSessionTable
from holepunch_rendezvous.registry import Registry

A, B = "worker-a", "worker-b"
DENY_ALL = IntroductionPolicy(frozenset(), None, "nobody reaches anybody")


def registry_with(*ids: str, endpoints: bool = True) -> Registry:
    registry = Registry()
    for n, worker_id in enumerate(ids, start=1):
        registry.connect(worker_id, n, "127.0.0.1", 50000 + n, now=0.0)
        if endpoints:
            update = UpdateUdpEndpoint(udp_ip="203.0.113.1", udp_port=4000 + n)
            registry.update_udp_endpoint(worker_id, n, update, now=0.0)
    return registry


def test_request_id_round_trips_and_is_optional() -> None:
    with_id = ConnectRequest(peer_id=B, request_id=7)
    assert json.loads(encode_message(with_id))["request_id"] == 7
    assert decode_client_message(encode_message(with_id)) == with_id
    plain = ConnectRequest(peer_id=B)
    assert json.loads(encode_message(plain)) == {"type": "connect_request", "peer_id": B}
    assert decode_client_message(encode_message(plain)) == plain
    error = ErrorMessage(code="peer_not_found", detail="gone", request_id=3)
    assert decode_server_message(encode_message(error)) == error
    assert "request_id" not in json.loads(encode_message(ErrorMessage("x", "y")))


@pytest.mark.parametrize("bad", ["7", 7.0, True, -1, 2**31])
def test_a_malformed_request_id_is_refused(bad: object) -> None:
    frame = json.dumps({"type": "connect_request", "peer_id": B, "request_id": bad})
    with pytest.raises(ProtocolError) as raised:
        decode_client_message(frame)
    assert raised.value.code.value == "invalid_field"


def test_a_refusal_echoes_the_request_id() -> None:
    registry = registry_with(A)
    frame = encode_message(ConnectRequest(peer_id=B, request_id=41))
    outcome = handle_text_frame(registry, PunchSessionTable(), A, 1, frame, now=1.0)
    assert outcome.reply == ErrorMessage(
        code="peer_not_found", detail=f"worker {B!r} is not connected", request_id=41
    )
    assert outcome.deliveries == ()


def test_a_policy_refusal_echoes_the_request_id() -> None:
    registry = registry_with(A, B)
    sessions = PunchSessionTable()
    request = ConnectRequest(peer_id=B, request_id=5)
    outcome = handle_message(registry, sessions, A, 1, request, 1.0, policy=DENY_ALL)
    assert isinstance(outcome.reply, ErrorMessage)
    assert (outcome.reply.code, outcome.reply.request_id) == ("not_allowed", 5)
    assert outcome.created_session is None


def test_the_initiators_introduction_carries_the_request_id_and_only_its() -> None:
    registry = registry_with(A, B)
    frame = encode_message(ConnectRequest(peer_id=B, request_id=9))
    outcome = handle_text_frame(registry, PunchSessionTable(), A, 1, frame, now=1.0)
    assert outcome.reply is None
    by_worker = {d.worker_id: d.message for d in outcome.deliveries}
    to_a, to_b = by_worker[A], by_worker[B]
    assert isinstance(to_a, PeerIntroduction) and isinstance(to_b, PeerIntroduction)
    assert (to_a.peer_id, to_a.request_id) == (B, 9)
    assert (to_b.peer_id, to_b.request_id) == (A, None)
    assert json.loads(encode_message(to_a))["request_id"] == 9
    assert "request_id" not in json.loads(encode_message(to_b))


def test_without_a_request_id_the_answers_are_as_before() -> None:
    registry = registry_with(A)
    frame = encode_message(ConnectRequest(peer_id=B))
    outcome = handle_text_frame(registry, PunchSessionTable(), A, 1, frame, now=1.0)
    assert outcome.reply is not None
    assert json.loads(encode_message(outcome.reply)) == {
        "type": "error",
        "code": "peer_not_found",
        "detail": f"worker {B!r} is not connected",
    }
