"""What the rendezvous answers to each frame, and what it logs, with no sockets."""

from __future__ import annotations

import json
import logging

from holepunch_protocol import (
    AckStatus,
    EchoResponse,
    ErrorMessage,
    MyDetailsResponse,
    UdpEndpointAck,
    encode_message,
)
from holepunch_rendezvous.handler import handle_binary_frame, handle_text_frame
from holepunch_rendezvous.punch_sessions import PunchSessionTable
from holepunch_rendezvous.registry import Registry


def connected_registry() -> Registry:
    registry = Registry()
    registry.connect("w1", 1, "127.0.0.1", 50000, now=0.0)
    return registry


def test_update_is_acked_stored_and_logged() -> None:
    registry = connected_registry()
    outcome = handle_text_frame(
        registry,
        PunchSessionTable(),
        "w1",
        1,
        '{"type":"update_udp_endpoint","udp_ip":"203.0.113.1","udp_port":4000,"mapping":"unknown"}',
        now=5.0,
    )
    assert outcome.reply == UdpEndpointAck(AckStatus.SUCCESS)
    assert outcome.event is not None and outcome.event.name == "udp_endpoint_updated"
    assert outcome.event.fields["udp_port"] == 4000
    assert outcome.event.fields["changed"] is True
    record = registry.get("w1")
    assert record is not None and record.udp_endpoint is not None
    assert (record.udp_endpoint.ip, record.udp_endpoint.port) == ("203.0.113.1", 4000)


def test_rejected_update_gets_an_error_ack_and_changes_nothing() -> None:
    registry = connected_registry()
    handle_text_frame(
        registry,
        PunchSessionTable(),
        "w1",
        1,
        '{"type":"update_udp_endpoint","udp_ip":"1.1.1.1","udp_port":9}',
        1.0,
    )
    outcome = handle_text_frame(
        registry,
        PunchSessionTable(),
        "w1",
        1,
        '{"type":"update_udp_endpoint","udp_ip":"1.1.1.1","udp_port":"x"}',
        2.0,
    )
    assert isinstance(outcome.reply, UdpEndpointAck)
    assert outcome.reply.status is AckStatus.ERROR
    assert outcome.reply.detail == "udp_port must be an integer"
    assert outcome.event is not None
    assert (outcome.event.name, outcome.event.level) == ("udp_endpoint_rejected", logging.WARNING)
    record = registry.get("w1")
    assert record is not None and record.udp_endpoint is not None
    assert (record.udp_endpoint.port, record.udp_updated_at) == (9, 1.0)


def test_unknown_and_malformed_frames_get_an_error_message() -> None:
    registry = connected_registry()
    for raw, code in [
        ("{", "invalid_json"),
        ('{"type":"nope"}', "unknown_type"),
        ("[]", "not_an_object"),
    ]:
        outcome = handle_text_frame(registry, PunchSessionTable(), "w1", 1, raw, 1.0)
        assert isinstance(outcome.reply, ErrorMessage)
        assert outcome.reply.code == code
        assert outcome.event is not None and outcome.event.name == "message_rejected"
        assert outcome.event.fields["code"] == code


def test_binary_frames_are_refused() -> None:
    outcome = handle_binary_frame("w1")
    assert isinstance(outcome.reply, ErrorMessage) and outcome.reply.code == "binary_frame"


def test_echo_and_details() -> None:
    registry = connected_registry()
    echo = handle_text_frame(
        registry, PunchSessionTable(), "w1", 1, '{"type":"echo_request","payload":"abc"}', 1.0
    )
    assert isinstance(echo.reply, EchoResponse)
    assert echo.reply.processed_by_rendezvous == "Rendezvous processed: 'ABC' for worker w1"
    handle_text_frame(
        registry,
        PunchSessionTable(),
        "w1",
        1,
        '{"type":"register_public_ip","ip":"198.51.100.7"}',
        1.0,
    )
    details = handle_text_frame(
        registry, PunchSessionTable(), "w1", 1, '{"type":"get_my_details"}', 1.0
    )
    assert isinstance(details.reply, MyDetailsResponse)
    assert json.loads(encode_message(details.reply)) == {
        "type": "my_details_response",
        "worker_id": "w1",
        "registered_ip": "198.51.100.7",
        "registered_port": 50000,
        "udp_ip": None,
        "udp_port": None,
        "message": "These are your details as seen by the Rendezvous service.",
    }


def test_a_replaced_connection_can_no_longer_change_the_record() -> None:
    registry = connected_registry()
    registry.connect("w1", 2, "127.0.0.1", 50001, now=1.0)
    outcome = handle_text_frame(
        registry,
        PunchSessionTable(),
        "w1",
        1,
        '{"type":"update_udp_endpoint","udp_ip":"1.1.1.1","udp_port":9}',
        2.0,
    )
    assert isinstance(outcome.reply, UdpEndpointAck) and outcome.reply.status is AckStatus.ERROR
    record = registry.get("w1")
    assert record is not None and record.udp_endpoint is None
