"""Property-based fuzzing of everything that parses untrusted input, with no sockets.

Whatever arrives, the decoders raise only ProtocolError (or return None for datagrams),
what they accept re-encodes to the same message, and a rejected frame leaves the
rendezvous registry and sessions exactly as they were.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from holepunch_protocol import (
    PeerKind,
    ProtocolError,
    ReplayWindow,
    decode_client_message,
    decode_server_message,
    encode_message,
    open_peer_datagram,
    seal_peer_datagram,
)
from holepunch_rendezvous.handler import handle_binary_frame, handle_text_frame
from holepunch_rendezvous.punch_sessions import PunchSessionTable
from holepunch_rendezvous.registry import Registry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Examples per property and deadline: the fuzz profile (tests/fuzz/profiles.py).
FUZZ = settings(
    suppress_health_check=[HealthCheck.too_slow],
)

CLIENT_TYPES = [
    "register_public_ip",
    "update_udp_endpoint",
    "echo_request",
    "get_my_details",
    "connect_request",
    "punch_result",
    "relay_datagram",
    "list_peers",
    "auth_proof",
]
SERVER_TYPES = [
    "udp_endpoint_ack",
    "echo_response",
    "my_details_response",
    "error",
    "peer_introduction",
    "relay_datagram",
    "peers",
    "auth_challenge",
]
FIELD_NAMES = [
    "ip", "udp_ip", "udp_port", "mapping", "local_port", "payload", "peer_id", "session_id",
    "status", "path", "attempts", "elapsed_ms", "rtt_ms", "peer_udp_ip", "peer_udp_port",
    "data", "secret", "role", "relay_first", "peer_mapping", "code", "detail", "worker_id",
    "original_payload", "processed_by_rendezvous", "limit", "cursor", "request_id", "peers",
    "next_cursor", "tags", "public_key", "signature", "nonce", "peer_public_key",
]  # fmt: skip

# Values close to valid ones: that is where validation bugs live.
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "203.0.113.5", "::1", "fe80::1%eth0", "0.0.0.0", "255.255.255.255", "1.2.3.4:5",
            "endpoint_independent", "endpoint_dependent", "connected", "relay", "initiator",
            "ab" * 16, "ab" * 32, "AA==", "\ud800", "worker-1", "", "x" * 5000, "team-a",
            # base64url of 32 and 64 bytes (keys, nonces, signatures), padded and not.
            "A" * 43, "A" * 43 + "=", "A" * 42 + "B", "_" * 43, "A" * 86, "A" * 86 + "==",
        ]
    ),
)  # fmt: skip
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def message_objects(types: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda kind, fields: {"type": kind, **fields},
        st.sampled_from([*types, "bogus"]) | json_leaves,
        st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8),
    )


def as_frame(obj: object) -> str:
    return json.dumps(obj, allow_nan=True)


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_decoders_raise_only_protocol_errors_on_any_text(frame: str) -> None:
    for decode in (decode_client_message, decode_server_message):
        with contextlib.suppress(ProtocolError):
            decode(frame)


@FUZZ
@given(message_objects(CLIENT_TYPES))
def test_client_messages_accepted_are_canonical(obj: dict[str, Any]) -> None:
    try:
        message = decode_client_message(as_frame(obj))
    except ProtocolError as error:
        assert error.detail and error.code
        return
    assert decode_client_message(encode_message(message)) == message


@FUZZ
@given(message_objects(SERVER_TYPES))
def test_server_messages_accepted_are_canonical(obj: dict[str, Any]) -> None:
    try:
        message = decode_server_message(as_frame(obj))
    except ProtocolError:
        return
    assert decode_server_message(encode_message(message)) == message


def _snapshot(registry: Registry, sessions: PunchSessionTable) -> object:
    return (
        [
            (r.worker_id, r.connection_id, r.udp_endpoint, r.reported_public_ip, r.udp_update_count)
            for r in registry
        ],
        [(s.session_id, dict(s.results), s.relayed_datagrams) for s in sessions.active()],
    )


@FUZZ
@given(st.one_of(message_objects(CLIENT_TYPES).map(as_frame), st.text(max_size=200)))
def test_a_rejected_frame_changes_no_state(frame: str) -> None:
    registry, sessions = Registry(), PunchSessionTable()
    registry.connect("w1", 1, "127.0.0.1", 1, now=0.0)
    registry.connect("w2", 2, "127.0.0.1", 2, now=0.0)
    before = _snapshot(registry, sessions)
    outcome = handle_text_frame(registry, sessions, "w1", 1, frame, now=1.0)
    rejected = outcome.event is not None and outcome.event.name.endswith("_rejected")
    if rejected:
        assert _snapshot(registry, sessions) == before
        assert outcome.deliveries == ()
    # Either way the neighbour's record is untouched.
    neighbour = registry.get("w2")
    assert neighbour is not None and neighbour.udp_endpoint is None
    assert handle_binary_frame("w1").reply is not None


SECRET = bytes(range(32))
SESSION = bytes(range(16))


@FUZZ
@given(st.binary(max_size=1300))
def test_peer_datagrams_open_only_when_sealed_with_the_secret(datagram: bytes) -> None:
    assert open_peer_datagram(SECRET, datagram) is None  # random bytes never verify


@FUZZ
@given(
    st.sampled_from(list(PeerKind)),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=64),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=255),
)
def test_any_change_to_a_sealed_datagram_is_refused(
    kind: PeerKind, sequence: int, payload: bytes, position: int, flip: int
) -> None:
    sealed = seal_peer_datagram(SECRET, kind, SESSION, sequence, payload)
    opened = open_peer_datagram(SECRET, sealed)
    assert opened is not None and (opened.kind, opened.sequence, opened.payload) == (
        kind,
        sequence,
        payload,
    )
    if flip:
        tampered = bytearray(sealed)
        tampered[position % len(sealed)] ^= flip
        assert open_peer_datagram(SECRET, bytes(tampered)) is None


@FUZZ
@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=200))
def test_replay_window_never_accepts_a_number_twice(sequence_numbers: list[int]) -> None:
    window = ReplayWindow(size=64)
    accepted = [n for n in sequence_numbers if window.accept(n)]
    assert len(accepted) == len(set(accepted))
