"""The UDP forward's header and the flow table: pure, on a virtual clock."""

from __future__ import annotations

import pytest
from holepunch_worker.dataplane.flow_table import FlowTable
from holepunch_worker.dataplane.udp_forward import (
    HEADER_BYTES,
    UdpForwardHeader,
    UdpForwardKind,
    decode_udp_forward,
    encode_udp_forward,
)


def test_the_header_round_trips_and_is_seven_bytes() -> None:
    header = UdpForwardHeader(UdpForwardKind.REPLY, 0xDEADBEEF, 5353)
    data = encode_udp_forward(header, b"payload")
    assert data == bytes([1, 0xDE, 0xAD, 0xBE, 0xEF, 0x14, 0xE9]) + b"payload"
    assert HEADER_BYTES == 7
    assert decode_udp_forward(data) == (header, b"payload")


def test_an_empty_payload_is_a_datagram_too() -> None:
    header = UdpForwardHeader(UdpForwardKind.REQUEST, 1, 53)
    assert decode_udp_forward(encode_udp_forward(header, b"")) == (header, b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than its header"),
        (bytes([0, 0, 0, 0, 1, 0]), "shorter than its header"),
        (bytes([2, 0, 0, 0, 1, 0, 53]), "unknown UDP forward kind 2"),
        (bytes([0, 0, 0, 0, 1, 0, 0]), "port 0"),
    ],
)
def test_a_malformed_datagram_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_udp_forward(data)


def test_a_flow_lives_while_used_and_expires_when_idle() -> None:
    table: FlowTable[str, int] = FlowTable(max_flows=4, idle_timeout=10.0)
    assert table.add("a", 1, now=0.0) == []
    assert table.add("b", 2, now=1.0) == []
    assert table.get("a", now=9.0) == 1  # used: its clock restarts
    assert table.expire(now=10.9) == []
    assert table.expire(now=11.0) == [("b", 2)]
    assert table.get("b", now=11.0) is None
    assert table.expire(now=19.0) == [("a", 1)]
    assert len(table) == 0


def test_a_full_table_refuses_a_new_flow_unless_an_idle_one_makes_room() -> None:
    table: FlowTable[str, int] = FlowTable(max_flows=2, idle_timeout=10.0)
    table.add("a", 1, now=0.0)
    table.add("b", 2, now=5.0)
    assert table.add("c", 3, now=6.0) is None  # both in use: refused, nothing changed
    assert "c" not in table and len(table) == 2
    assert table.add("c", 3, now=10.0) == [("a", 1)]  # a idle: expired to make room
    assert table.values() == [2, 3]


def test_a_flow_cannot_be_added_twice_and_can_be_removed() -> None:
    table: FlowTable[str, int] = FlowTable(max_flows=2, idle_timeout=10.0)
    table.add("a", 1, now=0.0)
    with pytest.raises(KeyError):
        table.add("a", 9, now=0.0)
    assert table.remove("a") == 1 and table.remove("a") is None


@pytest.mark.parametrize(("max_flows", "idle"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_limits_must_make_sense(max_flows: int, idle: float) -> None:
    with pytest.raises(ValueError):
        FlowTable(max_flows=max_flows, idle_timeout=idle)
