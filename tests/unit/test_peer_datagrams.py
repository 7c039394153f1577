"""Sealed peer datagrams and the new punching messages, with no sockets."""

from __future__ import annotations

import json
import os

import pytest
from holepunch_protocol import (
    MAX_APPLICATION_DATA_BYTES,
    MAX_PEER_PAYLOAD_BYTES,
    PROBE_TIMESTAMP_BYTES,
    PUNCH_RESULT_MAX_ATTEMPTS,
    PUNCH_RESULT_MAX_MS,
    SECRET_BYTES,
    SECRET_HEX,
    SESSION_ID_BYTES,
    SESSION_ID_HEX,
    ConnectRequest,
    DataKind,
    ErrorCode,
    MappingBehaviour,
    PathKind,
    PeerData,
    PeerIntroduction,
    PeerKind,
    PeerRole,
    ProtocolError,
    PunchResult,
    PunchStatus,
    RelayDatagram,
    ReplayWindow,
    decode_client_message,
    decode_data,
    decode_probe_timestamp,
    decode_server_message,
    encode_data,
    encode_message,
    encode_ping,
    encode_probe_timestamp,
    open_peer_datagram,
    peek_session_id,
    seal_peer_datagram,
)

SECRET = os.urandom(SECRET_BYTES)
SESSION = os.urandom(SESSION_ID_BYTES)


def test_sealed_datagram_opens_with_the_secret_only() -> None:
    sealed = seal_peer_datagram(SECRET, PeerKind.DATA, SESSION, 7, b"hello")
    opened = open_peer_datagram(SECRET, sealed)
    assert opened is not None
    assert (opened.kind, opened.session_id, opened.sequence, opened.payload) == (
        PeerKind.DATA,
        SESSION,
        7,
        b"hello",
    )
    assert peek_session_id(sealed) == SESSION
    assert open_peer_datagram(os.urandom(SECRET_BYTES), sealed) is None


@pytest.mark.parametrize("position", [0, 4, 5, 21, 29, -17, -1])
def test_any_flipped_byte_is_refused(position: int) -> None:
    sealed = bytearray(seal_peer_datagram(SECRET, PeerKind.PROBE, SESSION, 1, b"12345678"))
    sealed[position] ^= 0x01
    assert open_peer_datagram(SECRET, bytes(sealed)) is None


def test_not_peer_datagrams() -> None:
    for datagram in (b"", b"HPX1", encode_ping(b"x"), os.urandom(60), b"HPX1" + os.urandom(60)):
        assert open_peer_datagram(SECRET, datagram) is None
    assert peek_session_id(encode_ping(b"token")) is None


def test_payload_limit() -> None:
    seal_peer_datagram(SECRET, PeerKind.DATA, SESSION, 1, b"x" * MAX_PEER_PAYLOAD_BYTES)
    with pytest.raises(ValueError, match="payload"):
        seal_peer_datagram(SECRET, PeerKind.DATA, SESSION, 1, b"x" * (MAX_PEER_PAYLOAD_BYTES + 1))


def test_data_payloads_round_trip() -> None:
    assert decode_data(encode_data(DataKind.APPLICATION, b"x")) == PeerData(
        DataKind.APPLICATION, b"x"
    )
    assert decode_data(encode_data(DataKind.ECHO_REQUEST, b"pad", echo_id=7)) == PeerData(
        DataKind.ECHO_REQUEST, b"pad", 7
    )
    assert decode_data(encode_data(DataKind.ECHO_REPLY, echo_id=2**64 - 1)) == PeerData(
        DataKind.ECHO_REPLY, b"", 2**64 - 1
    )
    assert encode_data(DataKind.APPLICATION, b"x") == b"\x00x"  # one sub-type byte
    assert decode_data(b"") is None
    assert decode_data(b"\x01short") is None  # an echo without its 8-byte id
    assert decode_data(b"\x09whatever") is None
    # Application data fills a datagram exactly.
    largest = encode_data(DataKind.APPLICATION, b"x" * MAX_APPLICATION_DATA_BYTES)
    assert len(largest) == MAX_PEER_PAYLOAD_BYTES
    seal_peer_datagram(SECRET, PeerKind.DATA, SESSION, 1, largest)


def test_probe_timestamps_round_trip_to_the_microsecond() -> None:
    payload = encode_probe_timestamp(1234.5678905)
    assert len(payload) == PROBE_TIMESTAMP_BYTES
    decoded = decode_probe_timestamp(payload)
    assert decoded is not None and abs(decoded - 1234.5678905) < 1e-6
    assert decode_probe_timestamp(encode_probe_timestamp(-1.0)) == 0.0
    assert decode_probe_timestamp(encode_probe_timestamp(2.0**64)) is not None  # wraps
    assert decode_probe_timestamp(payload[:-1]) is None
    assert decode_probe_timestamp(payload + b"\0") is None


def test_session_ids_and_secrets_are_hex_of_the_datagram_lengths() -> None:
    assert (SESSION_ID_HEX, SECRET_HEX) == (2 * SESSION_ID_BYTES, 2 * SECRET_BYTES)
    introduction = PeerIntroduction(
        session_id=SESSION.hex(),
        peer_id="worker-b",
        peer_udp_ip="203.0.113.5",
        peer_udp_port=40000,
        peer_mapping=None,
        secret=SECRET.hex(),
        role=PeerRole.INITIATOR,
    )
    assert decode_server_message(encode_message(introduction)) == introduction
    for field, value in (("session_id", SESSION.hex()[:-2]), ("secret", SECRET.hex() + "00")):
        fields = {**introduction.to_fields(), field: value}
        with pytest.raises(ProtocolError, match=field):
            decode_server_message(json.dumps(fields))


@pytest.mark.parametrize(
    ("attempts", "elapsed_ms", "accepted"),
    [
        (PUNCH_RESULT_MAX_ATTEMPTS, PUNCH_RESULT_MAX_MS, True),
        (PUNCH_RESULT_MAX_ATTEMPTS + 1, 1, False),
        (1, PUNCH_RESULT_MAX_MS + 1, False),
    ],
)
def test_punch_result_limits(attempts: int, elapsed_ms: int, accepted: bool) -> None:
    frame = encode_message(
        PunchResult(
            session_id=SESSION.hex(),
            peer_id="worker-b",
            status=PunchStatus.FAILED,
            path=PathKind.NONE,
            attempts=attempts,
            elapsed_ms=elapsed_ms,
        )
    )
    if accepted:
        decode_client_message(frame)
    else:
        with pytest.raises(ProtocolError):
            decode_client_message(frame)


def test_replay_window_accepts_each_number_once_and_tolerates_reordering() -> None:
    window = ReplayWindow(size=4)
    assert [window.accept(n) for n in (1, 3, 2, 3, 1)] == [True, True, True, False, False]
    assert window.accept(10)
    assert not window.accept(6)  # older than the window
    assert window.accept(7)  # inside the window, never seen
    assert all(window.accept(n) for n in range(11, 1000))
    assert not window.accept(500)


def test_punching_messages_round_trip() -> None:
    introduction = PeerIntroduction(
        session_id="ab" * 16,
        peer_id="worker-b",
        peer_udp_ip="203.0.113.5",
        peer_udp_port=40000,
        peer_mapping=MappingBehaviour.ENDPOINT_INDEPENDENT,
        secret="cd" * 32,
        role=PeerRole.RESPONDER,
    )
    assert decode_server_message(encode_message(introduction)) == introduction
    relay = RelayDatagram(session_id="ab" * 16, data=b"\x00\xffsealed")
    assert decode_client_message(encode_message(relay)) == relay
    assert decode_server_message(encode_message(relay)) == relay
    result = PunchResult(
        session_id="ab" * 16,
        peer_id="worker-b",
        status=PunchStatus.CONNECTED,
        path=PathKind.DIRECT,
        attempts=3,
        elapsed_ms=61.5,
        rtt_ms=50.2,
        peer_udp_ip="203.0.113.5",
        peer_udp_port=40001,
    )
    assert decode_client_message(encode_message(result)) == result
    assert decode_client_message('{"type":"connect_request","peer_id":"w2"}') == ConnectRequest(
        "w2"
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "connect_request"},
        {"type": "connect_request", "peer_id": "../etc"},
        {"type": "relay_datagram", "session_id": "AB" * 16, "data": "AA=="},
        {"type": "relay_datagram", "session_id": "ab" * 15, "data": "AA=="},
        {"type": "relay_datagram", "session_id": "ab" * 16, "data": "not base64!"},
        {"type": "relay_datagram", "session_id": "ab" * 16, "data": ""},
        {"type": "relay_datagram", "session_id": "ab" * 16, "data": "A" * 2000},
        {
            "type": "punch_result",
            "session_id": "ab" * 16,
            "peer_id": "w",
            "status": "won",
            "path": "direct",
            "attempts": 1,
            "elapsed_ms": 1,
        },
        {
            "type": "punch_result",
            "session_id": "ab" * 16,
            "peer_id": "w",
            "status": "connected",
            "path": "direct",
            "attempts": -1,
            "elapsed_ms": 1,
        },
        {
            "type": "punch_result",
            "session_id": "ab" * 16,
            "peer_id": "w",
            "status": "connected",
            "path": "direct",
            "attempts": 1,
            "elapsed_ms": True,
        },
        {
            "type": "punch_result",
            "session_id": "ab" * 16,
            "peer_id": "w",
            "status": "connected",
            "path": "direct",
            "attempts": 1,
            "elapsed_ms": 5,
            "peer_udp_port": 0,
        },
    ],
)
def test_bad_punching_messages_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_client_message(json.dumps(fields))
    assert caught.value.code in (ErrorCode.MISSING_FIELD, ErrorCode.INVALID_FIELD)
    assert caught.value.message_type == fields["type"]
