"""The data-plane stream header: encode, incremental decode, and garbage refused
(tests/fuzz/test_fuzz_stream_header.py fuzzes the decoder)."""

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
    OpenHeaderDecoder,
    StatusDecoder,
    StreamHeaderError,
    StreamOpen,
    StreamStatus,
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
    decoder = OpenHeaderDecoder()
    results = [decoder.feed(encoded[i : i + 1]) for i in range(2)]
    assert results == [None, None]
    assert decoder.feed(encoded[2:]) == (StreamOpen(port), b"data")


@pytest.mark.parametrize("port", [0, 65536, -1, True])
def test_open_header_refuses_ports_out_of_range(port: int) -> None:
    with pytest.raises(ValueError, match=r"port must be in 1\.\.65535"):
        encode_open(port)


def test_open_header_refuses_another_version_at_its_first_byte() -> None:
    with pytest.raises(StreamHeaderError, match="version 71"):
        OpenHeaderDecoder().feed(b"G")  # e.g. someone speaking HTTP to the stream


def test_open_header_refuses_port_zero() -> None:
    with pytest.raises(StreamHeaderError, match="port 0"):
        OpenHeaderDecoder().feed(b"\x01\x00\x00")


def test_a_decoder_decodes_once() -> None:
    decoder = OpenHeaderDecoder()
    assert decoder.feed(encode_open(8000)) == (StreamOpen(8000), b"")
    with pytest.raises(StreamHeaderError, match="already"):
        decoder.feed(b"x")


@pytest.mark.parametrize("status", list(StreamStatus))
def test_status_round_trip(status: StreamStatus) -> None:
    assert StatusDecoder().feed(encode_status(status) + b"x") == (status, b"x")


def test_status_reasons_are_the_contract_s_names() -> None:
    assert [s.reason for s in StreamStatus] == [
        "ok",
        "port_not_exposed",
        "connect_failed",
        "too_many_streams",
    ]


def test_unknown_status_refused() -> None:
    with pytest.raises(StreamHeaderError, match="unknown stream status 9"):
        StatusDecoder().feed(b"\x09")
    assert StatusDecoder().feed(b"") is None
