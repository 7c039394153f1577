"""Authenticated UDP datagrams between two introduced workers (hole punching).

Layout (all integers big-endian):

    magic "HPX1" | kind (1) | session id (16) | sequence (8) | payload | tag (16)

`tag` is HMAC-SHA256 over everything before it, keyed with the session secret the
rendezvous gave both peers, truncated to 16 bytes. Without the secret nobody can make a
datagram the peer accepts, and the sender's strictly increasing `sequence` lets the
receiver refuse replays (so a captured probe replayed from another address cannot move
the path). The magic starts with 'H' (first bits 01), so it never looks like STUN
(RFC 7983), nor like a holepunch ping ("HOLEPUNCH-").

Payloads by kind:

    PROBE      the sender's clock in microseconds (8 bytes), echoed by the PROBE_ACK
    PROBE_ACK  the PROBE's timestamp, unchanged: the prober's round-trip time
    KEEPALIVE  empty
    DATA       sub-type (1) | rest:
                 APPLICATION   the application's bytes
                 ECHO_REQUEST  echo id (8) | padding, answered on the path it came by
                 ECHO_REPLY    echo id (8) | the request's padding
                 QUIC          one QUIC packet of the data plane's connection
                               with this peer (up to MAX_QUIC_PACKET_BYTES)

The session id and the secret are the ones the rendezvous hands both peers (as hex in
`peer_introduction`); `SESSION_ID_BYTES` and `SECRET_BYTES` are their one definition.

Pure: sealing and opening, no sockets, no clocks.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass

__all__ = [
    "MAX_APPLICATION_DATA_BYTES",
    "MAX_PEER_DATAGRAM_BYTES",
    "MAX_PEER_PAYLOAD_BYTES",
    "MAX_QUIC_PACKET_BYTES",
    "PEER_MAGIC",
    "PROBE_TIMESTAMP_BYTES",
    "SECRET_BYTES",
    "SESSION_ID_BYTES",
    "DataKind",
    "PeerData",
    "PeerDatagram",
    "PeerKind",
    "ReplayWindow",
    "decode_data",
    "decode_probe_timestamp",
    "encode_data",
    "encode_probe_timestamp",
    "open_peer_datagram",
    "peek_session_id",
    "seal_peer_datagram",
]

PEER_MAGIC = b"HPX1"
SESSION_ID_BYTES = 16
SECRET_BYTES = 32
TAG_BYTES = 16
_HEADER = struct.Struct(f"!4sB{SESSION_ID_BYTES}sQ")
_PROBE_TIMESTAMP = struct.Struct("!Q")
_ECHO = struct.Struct("!BQ")
PROBE_TIMESTAMP_BYTES = _PROBE_TIMESTAMP.size
# QUIC's smallest datagram size (RFC 9000 14.1: every path must carry 1,200 bytes, and a
# client's Initial is padded to it) fits whole after the header, DataKind byte and tag:
# 1,246 bytes, 1,274 with IPv4 and UDP headers, under the 1,280 that IPv6 guarantees.
MAX_QUIC_PACKET_BYTES = 1200
MAX_PEER_DATAGRAM_BYTES = _HEADER.size + 1 + MAX_QUIC_PACKET_BYTES + TAG_BYTES
MAX_PEER_PAYLOAD_BYTES = MAX_PEER_DATAGRAM_BYTES - _HEADER.size - TAG_BYTES
MAX_APPLICATION_DATA_BYTES = MAX_PEER_PAYLOAD_BYTES - 1  # after the DataKind byte


class PeerKind(enum.IntEnum):
    PROBE = 1  # payload: the sender's 8-byte timestamp, echoed by the ACK
    PROBE_ACK = 2
    KEEPALIVE = 3
    DATA = 4  # a `DataKind` byte, then its payload


class DataKind(enum.IntEnum):
    """The first byte of a DATA payload."""

    APPLICATION = 0
    ECHO_REQUEST = 1
    ECHO_REPLY = 2
    QUIC = 3  # a QUIC packet of the data plane


@dataclass(frozen=True, slots=True)
class PeerDatagram:
    kind: PeerKind
    session_id: bytes
    sequence: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class PeerData:
    """A decoded DATA payload; `echo_id` is 0 for application bytes and QUIC packets."""

    kind: DataKind
    payload: bytes
    echo_id: int = 0


def encode_data(kind: DataKind, payload: bytes = b"", echo_id: int = 0) -> bytes:
    """A DATA payload; `echo_id` (64 bits) is written for the echo kinds only."""
    if kind in (DataKind.APPLICATION, DataKind.QUIC):
        return bytes([kind]) + payload
    return _ECHO.pack(kind, echo_id) + payload


def decode_data(payload: bytes) -> PeerData | None:
    """The DATA payload's parts, or None when its sub-type or length is wrong."""
    if not payload:
        return None
    if payload[0] in (DataKind.APPLICATION, DataKind.QUIC):
        return PeerData(DataKind(payload[0]), payload[1:])
    if payload[0] in (DataKind.ECHO_REQUEST, DataKind.ECHO_REPLY) and len(payload) >= _ECHO.size:
        kind, echo_id = _ECHO.unpack_from(payload)
        return PeerData(DataKind(kind), payload[_ECHO.size :], echo_id)
    return None


def encode_probe_timestamp(now: float) -> bytes:
    """A PROBE payload: `now` (seconds on the sender's own clock) in microseconds.

    Only the sender reads it back (from the PROBE_ACK), so any clock will do; a value
    outside 64 bits wraps rather than fails.
    """
    return _PROBE_TIMESTAMP.pack(max(0, int(now * 1_000_000)) % 2**64)


def decode_probe_timestamp(payload: bytes) -> float | None:
    """The seconds a PROBE or PROBE_ACK payload carries, or None when malformed."""
    if len(payload) != PROBE_TIMESTAMP_BYTES:
        return None
    (microseconds,) = _PROBE_TIMESTAMP.unpack(payload)
    return float(microseconds / 1_000_000)


def _tag(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()[:TAG_BYTES]


def seal_peer_datagram(
    secret: bytes, kind: PeerKind, session_id: bytes, sequence: int, payload: bytes = b""
) -> bytes:
    if len(session_id) != SESSION_ID_BYTES:
        raise ValueError(f"session id must be {SESSION_ID_BYTES} bytes")
    if len(payload) > MAX_PEER_PAYLOAD_BYTES:
        raise ValueError(f"payload is longer than {MAX_PEER_PAYLOAD_BYTES} bytes")
    if not 0 <= sequence < 2**64:
        raise ValueError("sequence must fit in 64 bits")
    body = _HEADER.pack(PEER_MAGIC, kind, session_id, sequence) + payload
    return body + _tag(secret, body)


def peek_session_id(datagram: bytes) -> bytes | None:
    """The session id of something shaped like a peer datagram (not yet authenticated)."""
    if len(datagram) < _HEADER.size + TAG_BYTES or not datagram.startswith(PEER_MAGIC):
        return None
    return datagram[5 : 5 + SESSION_ID_BYTES]


def open_peer_datagram(secret: bytes, datagram: bytes) -> PeerDatagram | None:
    """The datagram if it is well formed and its tag verifies with `secret`, else None."""
    if peek_session_id(datagram) is None or len(datagram) > MAX_PEER_DATAGRAM_BYTES:
        return None
    body, tag = datagram[:-TAG_BYTES], datagram[-TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(secret, body)):
        return None
    _, raw_kind, session_id, sequence = _HEADER.unpack_from(body)
    try:
        kind = PeerKind(raw_kind)
    except ValueError:
        return None
    return PeerDatagram(kind, session_id, sequence, body[_HEADER.size :])


class ReplayWindow:
    """Accepts each sequence number once, within a sliding window (as IPsec/WireGuard).

    Loss and reordering are normal on UDP, so a number a little behind the highest seen
    is still accepted once; anything older than the window, or seen before, is a replay.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._highest = -1
        self._seen: set[int] = set()

    def accept(self, sequence: int) -> bool:
        if sequence <= self._highest - self._size or sequence in self._seen:
            return False
        self._seen.add(sequence)
        if sequence > self._highest:
            self._highest = sequence
            floor = self._highest - self._size
            if len(self._seen) > 2 * self._size:
                self._seen = {s for s in self._seen if s > floor}
        return True
