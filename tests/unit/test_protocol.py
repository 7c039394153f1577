"""The wire protocol: decoding, validation and encoding, with no sockets."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from holepunch_protocol import (
    MAX_FRAME_BYTES,
    AckStatus,
    ClientMessage,
    EchoRequest,
    EchoResponse,
    ErrorCode,
    GetMyDetails,
    MappingBehaviour,
    MyDetailsResponse,
    ProtocolError,
    RegisterPublicIp,
    ServerMessage,
    UdpEndpointAck,
    UpdateUdpEndpoint,
    decode_client_message,
    decode_server_message,
    encode_message,
    validate_worker_id,
)


def frame(**fields: object) -> str:
    return json.dumps(fields)


def test_original_design_frames_decode() -> None:
    assert decode_client_message(frame(type="register_public_ip", ip="203.0.113.9")) == (
        RegisterPublicIp("203.0.113.9")
    )
    assert decode_client_message(
        frame(type="update_udp_endpoint", udp_ip="203.0.113.9", udp_port=40000)
    ) == UpdateUdpEndpoint("203.0.113.9", 40000)
    assert decode_client_message(frame(type="echo_request", payload="hi")) == EchoRequest("hi")
    assert decode_client_message(frame(type="get_my_details")) == GetMyDetails()


def test_update_accepts_new_optional_fields_and_ignores_unknown_ones() -> None:
    message = decode_client_message(
        frame(
            type="update_udp_endpoint",
            udp_ip="2001:db8::1",
            udp_port=1,
            mapping="endpoint_dependent",
            local_port=65535,
            future_field={"x": 1},
        )
    )
    assert message == UpdateUdpEndpoint(
        "2001:db8::1", 1, MappingBehaviour.ENDPOINT_DEPENDENT, 65535
    )


def test_ip_literals_are_canonicalised() -> None:
    message = decode_client_message(
        frame(type="update_udp_endpoint", udp_ip="2001:DB8:0::1", udp_port=5)
    )
    assert isinstance(message, UpdateUdpEndpoint)
    assert message.udp_ip == "2001:db8::1"


@pytest.mark.parametrize(
    ("raw", "code", "message_type"),
    [
        ("not json", ErrorCode.INVALID_JSON, None),
        ("", ErrorCode.INVALID_JSON, None),
        ("[1, 2]", ErrorCode.NOT_AN_OBJECT, None),
        ('"update_udp_endpoint"', ErrorCode.NOT_AN_OBJECT, None),
        ("{}", ErrorCode.MISSING_TYPE, None),
        ('{"type": 7}', ErrorCode.UNKNOWN_TYPE, None),
        ('{"type": "launch_missiles"}', ErrorCode.UNKNOWN_TYPE, None),
        ('{"type": "udp_endpoint_ack", "status": "success"}', ErrorCode.UNKNOWN_TYPE, None),
        (
            '{"type": "update_udp_endpoint", "udp_port": 5}',
            ErrorCode.MISSING_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4"}',
            ErrorCode.MISSING_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": null}',
            ErrorCode.MISSING_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": "5000"}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": 5000.0}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": true}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": 0}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": 65536}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": -1}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "example.com", "udp_port": 5}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4:5", "udp_port": 5}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": 16909060, "udp_port": 5}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "0.0.0.0", "udp_port": 5}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "224.0.0.1", "udp_port": 5}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": 5, "mapping": "cone"}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": 5, "local_port": 0}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "255.255.255.255", "udp_port": 5}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        (
            '{"type": "update_udp_endpoint", "udp_ip": "fe80::1%eth0", "udp_port": 5}',
            ErrorCode.INVALID_FIELD,
            "update_udp_endpoint",
        ),
        ('{"type": "echo_request", "payload": "\\ud800"}', ErrorCode.INVALID_FIELD, "echo_request"),
        ('{"type": "register_public_ip"}', ErrorCode.MISSING_FIELD, "register_public_ip"),
        (
            '{"type": "register_public_ip", "ip": ["1.2.3.4"]}',
            ErrorCode.INVALID_FIELD,
            "register_public_ip",
        ),
        ('{"type": "echo_request"}', ErrorCode.MISSING_FIELD, "echo_request"),
        ('{"type": "echo_request", "payload": 5}', ErrorCode.INVALID_FIELD, "echo_request"),
        (
            '{"type": "echo_request", "payload": "' + "x" * 5000 + '"}',
            ErrorCode.INVALID_FIELD,
            "echo_request",
        ),
    ],
)
def test_bad_frames_raise_a_clear_protocol_error(
    raw: str, code: ErrorCode, message_type: str | None
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_client_message(raw)
    assert caught.value.code is code
    assert caught.value.message_type == message_type
    assert caught.value.detail


def test_oversized_and_deeply_nested_frames_are_refused_without_parsing() -> None:
    with pytest.raises(ProtocolError) as too_large:
        decode_client_message(
            '{"type": "echo_request", "payload": "' + "x" * MAX_FRAME_BYTES + '"}'
        )
    assert too_large.value.code is ErrorCode.FRAME_TOO_LARGE
    nested = "[" * 8000 + "]" * 8000
    assert len(nested) < MAX_FRAME_BYTES
    with pytest.raises(ProtocolError) as too_deep:
        decode_client_message(nested)
    assert too_deep.value.code is ErrorCode.INVALID_JSON


def test_server_messages_round_trip() -> None:
    messages = [
        UdpEndpointAck(AckStatus.SUCCESS),
        UdpEndpointAck(AckStatus.ERROR, "udp_port must be an integer"),
        EchoResponse.for_request(EchoRequest("hello"), "w1"),
        MyDetailsResponse("w1", "203.0.113.9", 4000, None, None),
    ]
    for message in messages:
        assert decode_server_message(encode_message(message)) == message


def test_each_side_decodes_the_types_of_its_union_and_no_others() -> None:
    client_types = {cls.TYPE for cls in get_args(ClientMessage)}
    server_types = {cls.TYPE for cls in get_args(ServerMessage)}
    assert "connect_request" in client_types and "peer_introduction" in server_types
    for decode, accepted in (
        (decode_client_message, client_types),
        (decode_server_message, server_types),
    ):
        for message_type in client_types | server_types:
            # An empty message of a known type fails on its fields, not on its type.
            try:
                decode(json.dumps({"type": message_type}))
            except ProtocolError as error:
                known = error.code is not ErrorCode.UNKNOWN_TYPE
            else:
                known = True
            assert known == (message_type in accepted), (decode.__name__, message_type)


def test_echo_response_matches_the_original_wording() -> None:
    response = EchoResponse.for_request(EchoRequest("hello"), "worker-7")
    assert json.loads(encode_message(response)) == {
        "type": "echo_response",
        "original_payload": "hello",
        "processed_by_rendezvous": "Rendezvous processed: 'HELLO' for worker worker-7",
    }


def test_ack_encodes_exactly_as_the_original_design() -> None:
    assert json.loads(encode_message(UdpEndpointAck(AckStatus.SUCCESS))) == {
        "type": "udp_endpoint_ack",
        "status": "success",
    }


@pytest.mark.parametrize(
    "worker_id", ["a", "0b7c5d3e-1f2a-4b5c-8d9e-0123456789ab", "w.1_x-2", "x" * 64]
)
def test_valid_worker_ids(worker_id: str) -> None:
    assert validate_worker_id(worker_id) == worker_id


@pytest.mark.parametrize(
    "worker_id", ["", "x" * 65, "-leading", ".hidden", "a b", "a/b", "é", "a\n"]
)
def test_invalid_worker_ids(worker_id: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_worker_id(worker_id)
    assert caught.value.code is ErrorCode.INVALID_WORKER_ID
