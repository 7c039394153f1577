"""UDP datagrams exchanged directly between peers and workers (not over the WebSocket).

A ping is `PING_MAGIC` followed by up to `MAX_TOKEN_BYTES` of opaque token; the pong
answering it is `PONG_MAGIC` followed by the same token. Both magics start with an ASCII
letter, so their first two bits are never 00 and a receiver can tell them from STUN
(RFC 7983 demultiplexing) before parsing anything.
"""

from __future__ import annotations

__all__ = [
    "MAX_TOKEN_BYTES",
    "PING_MAGIC",
    "PONG_MAGIC",
    "encode_ping",
    "pong_for",
    "pong_token",
]

PING_MAGIC = b"HOLEPUNCH-PING:"
PONG_MAGIC = b"HOLEPUNCH-PONG:"
MAX_TOKEN_BYTES = 64


def encode_ping(token: bytes = b"") -> bytes:
    if len(token) > MAX_TOKEN_BYTES:
        raise ValueError(f"ping token is longer than {MAX_TOKEN_BYTES} bytes")
    return PING_MAGIC + token


def pong_for(datagram: bytes) -> bytes | None:
    """The pong answering `datagram`, or None when it is not a well-formed ping.

    A pong is never longer than its ping, so answering cannot amplify traffic.
    """
    if not datagram.startswith(PING_MAGIC):
        return None
    token = datagram[len(PING_MAGIC) :]
    if len(token) > MAX_TOKEN_BYTES:
        return None
    return PONG_MAGIC + token


def pong_token(datagram: bytes) -> bytes | None:
    """The token of a pong, or None when `datagram` is not a pong."""
    if not datagram.startswith(PONG_MAGIC) or len(datagram) - len(PONG_MAGIC) > MAX_TOKEN_BYTES:
        return None
    return datagram[len(PONG_MAGIC) :]
