"""Property-based fuzzing of the data-plane stream header decoders: whatever bytes a peer
sends first on a stream, the decoder returns the header, None while it may still become
one, or raises StreamHeaderError; it never waits on garbage."""

from __future__ import annotations

from holepunch_protocol.stream_header import (
    OPEN_HEADER_BYTES,
    StreamHeaderError,
    StreamOpen,
    StreamStatus,
    decode_open,
    decode_status,
    encode_open,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@FUZZ
@given(st.binary(max_size=8))
def test_fuzz_open_decoder_either_decodes_or_refuses_cleanly(data: bytes) -> None:
    try:
        header = decode_open(data)
    except StreamHeaderError:
        return
    if header is None:
        assert len(data) < OPEN_HEADER_BYTES
    else:
        assert encode_open(header.port) == data[:OPEN_HEADER_BYTES]


@FUZZ
@given(st.integers(1, 65535), st.binary(max_size=16), st.integers(0, 3))
def test_fuzz_open_header_survives_any_prefix(port: int, tail: bytes, cut: int) -> None:
    encoded = encode_open(port) + tail
    assert decode_open(encoded[:cut]) == (StreamOpen(port) if cut == 3 else None)
    assert decode_open(encoded) == StreamOpen(port)


@FUZZ
@given(st.binary(max_size=4))
def test_fuzz_status_decoder_knows_every_byte_it_accepts(data: bytes) -> None:
    try:
        status = decode_status(data)
    except StreamHeaderError:
        assert not data or data[0] not in set(StreamStatus)
        return
    assert status == StreamStatus(data[0])


@FUZZ
@given(st.binary(min_size=1, max_size=1))
def test_fuzz_a_wrong_first_byte_is_refused_at_once(first: bytes) -> None:
    try:
        assert decode_open(first) is None
        assert first == bytes([1])
    except StreamHeaderError:
        assert first != bytes([1])
