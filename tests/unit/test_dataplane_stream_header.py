"""The data-plane stream header: encode, decode, and garbage refused from its first byte
(tests/fuzz/test_fuzz_stream_header.py fuzzes the decoders)."""

from __future__ import annotations

import pytest
from holepunch_protocol.peer_datagrams import (
    MAX_PEER_DATAGRAM_BYTES,
    MAX_PEER_PAYLOAD_BYTES,
    MAX_QUIC_PACKET_BYTES,
    DataKind,
    PeerData,
    decode_data,
    encode_data,
)
from holepunch_protocol.stream_header import (
    StreamHeaderError,
    StreamOpen,
    StreamStatus,
    decode_open,
    decode_status,
    encode_open,
    encode_status,
)


def test_a_whole_quic_packet_fits_in_one_sealed_datagram() -> None:
    packet = b"q" * MAX_QUIC_PACKET_BYTES
    assert len(encode_data(DataKind.QUIC, packet)) == MAX_PEER_PAYLOAD_BYTES
    assert decode_data(encode_data(DataKind.QUIC, packet)) == PeerData(DataKind.QUIC, packet)
    assert MAX_PEER_DATAGRAM_BYTES == 1246


@pytest.mark.parametrize("port", [1, 80, 65535])
def test_open_header_round_trip_byte_by_byte(port: int) -> None:
    encoded = encode_open(port) + b"data"
    assert [decode_open(encoded[:i]) for i in range(3)] == [None, None, None]
    assert decode_open(encoded) == StreamOpen(port)


@pytest.mark.parametrize("port", [0, 65536, -1, True])
def test_open_header_refuses_ports_out_of_range(port: int) -> None:
    with pytest.raises(ValueError, match=r"port must be in 1\.\.65535"):
        encode_open(port)


def test_open_header_refuses_another_version_at_its_first_byte() -> None:
    with pytest.raises(StreamHeaderError, match="version 71"):
        decode_open(b"G")  # e.g. someone speaking HTTP to the stream


def test_open_header_refuses_port_zero() -> None:
    with pytest.raises(StreamHeaderError, match="port 0"):
        decode_open(b"\x01\x00\x00")


@pytest.mark.parametrize("status", list(StreamStatus))
def test_status_round_trip(status: StreamStatus) -> None:
    assert decode_status(encode_status(status) + b"x") == status


def test_status_reasons_are_the_contract_s_names() -> None:
    assert [s.reason for s in StreamStatus] == [
        "ok",
        "port_not_exposed",
        "connect_failed",
        "too_many_streams",
    ]


def test_unknown_status_refused() -> None:
    with pytest.raises(StreamHeaderError, match="unknown stream status 9"):
        decode_status(b"\x09")
    with pytest.raises(StreamHeaderError, match="no stream status"):
        decode_status(b"")
