"""Property-based fuzzing of the SOCKS5 handshake machine, with no sockets.

Whatever a client sends, cut into whatever chunks: nothing raises, the answer is the same
as for the bytes in one piece, the machine holds at most one message, it sends at most a
method choice and one reply, and a well-formed request is read exactly (with the bytes
after it handed back as the client's first data).
"""

from __future__ import annotations

import itertools

from holepunch_worker.dataplane.socks5 import (
    SOCKS4_REJECTED,
    AddressType,
    ConnectRequest,
    HandshakeStep,
    PeerTarget,
    Socks5Handshake,
    TargetRefused,
    resolve_target,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Examples per property and deadline: the fuzz profile (tests/fuzz/profiles.py).
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow])
# A greeting (2 + 255 methods) and a request (4 + 1 + 255 + 2) at most.
LARGEST_MESSAGE = 262


def feed(data: bytes, cuts: list[int]) -> tuple[bytes, HandshakeStep | None, int]:
    """Everything sent, the final step (None while incomplete), the most bytes held."""
    handshake = Socks5Handshake()
    sent = b""
    held = 0
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        step = handshake.receive_data(data[start:end])
        sent += step.to_send
        held = max(held, handshake.buffered_bytes)
        if handshake.done:
            return sent, step, held
    return sent, None, held


socks5_prefix = st.builds(
    lambda methods, rest: bytes([5, len(methods)]) + bytes(methods) + rest,
    st.lists(st.integers(0, 255), max_size=255),
    st.binary(max_size=300),
)
client_bytes = st.one_of(st.binary(max_size=600), socks5_prefix)


@FUZZ
@given(client_bytes, st.lists(st.integers(0, 1000), max_size=20))
def test_any_bytes_in_any_chunks_get_the_same_bounded_answer(data: bytes, cuts: list[int]) -> None:
    whole_sent, whole_step, _ = feed(data, [])
    sent, step, held = feed(data, cuts)
    assert sent == whole_sent
    assert (step is None) == (whole_step is None)
    if step is not None and whole_step is not None:
        assert (step.request, step.close, step.reason) == (
            whole_step.request,
            whole_step.close,
            whole_step.reason,
        )
    # At most the method choice and one 10-byte reply (or SOCKS4's 8-byte refusal).
    assert len(sent) <= 12 and (not sent.startswith(b"\x00") or sent == SOCKS4_REJECTED)
    assert held < LARGEST_MESSAGE


hosts = st.one_of(
    st.binary(max_size=255),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.holepunch", fullmatch=True),
)


@FUZZ
@given(
    hosts,
    st.integers(0, 65535),
    st.binary(max_size=100),
    st.lists(st.integers(0, 1000), max_size=8),
)
def test_a_well_formed_request_is_read_exactly(
    host: bytes | str, port: int, early: bytes, cuts: list[int]
) -> None:
    raw_host = host.encode() if isinstance(host, str) else host
    request = bytes([5, 1, 0, 3, len(raw_host)]) + raw_host + port.to_bytes(2, "big")
    sent, step, _ = feed(bytes([5, 1, 0]) + request + early, cuts)
    assert step is not None
    try:
        text = raw_host.decode("ascii")
    except UnicodeDecodeError:
        assert step.close and step.reason == "invalid_host"
        return
    assert sent == bytes([5, 0]) and not step.close
    assert step.request == ConnectRequest(AddressType.DOMAIN, text, port)
    # Bytes after the request arrive as early data only if fed with its last byte.
    assert early.startswith(step.early_data)


@FUZZ
@given(st.sampled_from(AddressType), st.text(max_size=300), st.integers(0, 65535))
def test_any_request_resolves_to_a_peer_or_a_refusal(
    address_type: AddressType, host: str, port: int
) -> None:
    outcome = resolve_target(ConnectRequest(address_type, host, port), "worker-a")
    assert isinstance(outcome, PeerTarget | TargetRefused)
    if isinstance(outcome, PeerTarget):
        assert address_type is AddressType.DOMAIN and port != 0
        assert outcome.peer_id != "worker-a"
        assert host.removesuffix(".").lower().endswith(".holepunch")
