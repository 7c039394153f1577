"""Property-based fuzzing of the data-plane stream header decoder: whatever bytes a peer
sends first on a stream, in whatever pieces, the decoder returns the header and exactly the
bytes after it, or raises StreamHeaderError; it never waits on garbage."""

from __future__ import annotations

from holepunch_protocol.stream_header import (
    OpenHeaderDecoder,
    StatusDecoder,
    StreamHeaderError,
    StreamOpen,
    StreamStatus,
    encode_open,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@FUZZ
@given(st.lists(st.binary(max_size=8), max_size=6))
def test_fuzz_open_decoder_either_decodes_or_refuses_cleanly(chunks: list[bytes]) -> None:
    decoder = OpenHeaderDecoder()
    fed = b""
    for chunk in chunks:
        try:
            result = decoder.feed(chunk)
        except StreamHeaderError:
            return
        fed += chunk
        if result is not None:
            header, rest = result
            assert encode_open(header.port) + rest == fed
            return
    assert len(fed) < 3


@FUZZ
@given(st.integers(1, 65535), st.binary(max_size=16), st.integers(0, 3))
def test_fuzz_open_header_survives_any_split(port: int, tail: bytes, split: int) -> None:
    encoded = encode_open(port) + tail
    decoder = OpenHeaderDecoder()
    first = decoder.feed(encoded[:split])
    if first is None:
        assert decoder.feed(encoded[split:]) == (StreamOpen(port), tail)
    else:  # the header was whole in the first part: the rest is the application's
        assert first == (StreamOpen(port), b"") and encoded[split:] == tail


@FUZZ
@given(st.binary(max_size=4))
def test_fuzz_status_decoder_knows_every_byte_it_accepts(data: bytes) -> None:
    try:
        result = StatusDecoder().feed(data)
    except StreamHeaderError:
        assert data[0] not in set(StreamStatus)
        return
    if result is None:
        assert data == b""
    else:
        assert result == (StreamStatus(data[0]), data[1:])


@FUZZ
@given(st.binary(min_size=1, max_size=1))
def test_fuzz_a_wrong_first_byte_is_refused_at_once(first: bytes) -> None:
    try:
        assert OpenHeaderDecoder().feed(first) is None
        assert first == bytes([1])
    except StreamHeaderError:
        assert first != bytes([1])
