"""The pure parts of holepunch_devtools.punch_bench (no root): packet parsing, reading the
session secret from a captured introduction, and the per-session timeline."""

from __future__ import annotations

import json
import socket
import struct

from holepunch_devtools.punch_bench import (
    CapturedPacket,
    introduction_secrets,
    parse_ipv4,
    session_timeline,
)
from holepunch_protocol import (
    SECRET_BYTES,
    SESSION_ID_HEX,
    PeerKind,
    encode_probe_timestamp,
    seal_peer_datagram,
)

SESSION = "0123456789abcdef0123456789abcdef"
SECRET = bytes(range(SECRET_BYTES))


def _ipv4(protocol: int, src: str, dst: str, transport: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(transport), 0, 0, 64, protocol, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return header + transport


def _introduction_frame() -> bytes:
    message = {"type": "peer_introduction", "session_id": SESSION, "secret": SECRET.hex()}
    body = json.dumps(message, separators=(",", ":")).encode()
    return b"\x81\x7e" + struct.pack("!H", len(body)) + body  # an unmasked text frame


def test_parse_ipv4_reads_udp_and_tcp_payloads() -> None:
    udp = struct.pack("!HHHH", 4000, 5000, 8 + 3, 0) + b"abc"
    assert parse_ipv4(_ipv4(17, "10.0.1.2", "198.51.100.102", udp)) == (
        17, "10.0.1.2", 4000, "198.51.100.102", 5000, b"abc"
    )  # fmt: skip
    tcp = struct.pack("!HHIIBBHHH", 8080, 40000, 0, 0, 5 << 4, 0x18, 0, 0, 0) + b"xyz"
    assert parse_ipv4(_ipv4(6, "198.51.100.10", "10.0.1.2", tcp)) == (
        6, "198.51.100.10", 8080, "10.0.1.2", 40000, b"xyz"
    )  # fmt: skip
    assert parse_ipv4(b"\x60" + bytes(39)) is None  # IPv6
    assert parse_ipv4(_ipv4(1, "10.0.1.2", "10.0.1.1", bytes(8))) is None  # ICMP
    assert parse_ipv4(b"\x45") is None


def test_timeline_from_captured_packets() -> None:
    frame = _introduction_frame()
    assert introduction_secrets([CapturedPacket(1.0, True, 6, "a", 8080, "b", 1, frame)]) == {
        SESSION: SECRET
    }
    key = bytes.fromhex(SESSION)
    probe = encode_probe_timestamp(0)
    genuine = seal_peer_datagram(SECRET, PeerKind.PROBE, key, 0, probe)
    forged = seal_peer_datagram(bytes(SECRET_BYTES), PeerKind.PROBE, key, 1, probe)
    public = [
        CapturedPacket(10.000, True, 6, "198.51.100.10", 8080, "198.51.100.101", 1, frame),
        CapturedPacket(10.001, True, 6, "198.51.100.10", 8080, "198.51.100.102", 1, frame),
    ]
    host_a = [
        CapturedPacket(10.005, False, 17, "198.51.100.102", 9, "10.0.1.2", 9, genuine),  # early
        CapturedPacket(10.025, False, 6, "198.51.100.10", 8080, "10.0.1.2", 1, frame),
        CapturedPacket(10.030, False, 17, "198.51.100.102", 9, "10.0.1.2", 9, forged),
        CapturedPacket(10.040, True, 17, "10.0.1.2", 9, "198.51.100.102", 9, genuine),
        CapturedPacket(10.050, False, 17, "198.51.100.102", 9, "10.0.1.2", 9, genuine),
    ]
    timeline = session_timeline(SESSION, SECRET, public, {"a": host_a, "b": []})
    assert timeline["intro_sent"] == 10.0
    # Arrivals before the worker's own introduction, forged ones and its own sends do not
    # count: the first authentic datagram it could accept came 50 ms after the send.
    assert round(timeline["a"]["intro_ms"]) == 25
    assert round(timeline["a"]["first_datagram_ms"]) == 50
    assert timeline["b"] == {"intro_ms": None, "first_datagram_ms": None}
    assert session_timeline("f" * SESSION_ID_HEX, SECRET, public, {}) == {"intro_sent": None}
