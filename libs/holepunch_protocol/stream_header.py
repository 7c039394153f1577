"""The first bytes of every data-plane stream between two workers.

The side that opens a QUIC stream writes an open header naming the port it wants on the
peer's loopback; the side that accepts answers one status byte before any data:

    open header   version (1) = STREAM_HEADER_VERSION | port (2, big-endian, 1..65535)
    status        one `StreamStatus` byte

After `OK` both directions carry the application's bytes; after any other status the
acceptor ends the stream. The decoders raise `StreamHeaderError` for anything that is not
a header, and `decode_open` does so from the first byte on, so a reader that reads one byte
first refuses garbage at once instead of waiting for the rest of a header.

Pure: no sockets, no clocks.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "OPEN_HEADER_BYTES",
    "STREAM_HEADER_VERSION",
    "StreamHeaderError",
    "StreamOpen",
    "StreamStatus",
    "decode_open",
    "decode_status",
    "encode_open",
    "encode_status",
]

STREAM_HEADER_VERSION = 1
_OPEN = struct.Struct("!BH")
OPEN_HEADER_BYTES = _OPEN.size


class StreamHeaderError(ValueError):
    """Bytes that are not a stream header (a wrong version, port 0, an unknown status)."""


class StreamStatus(enum.IntEnum):
    """The acceptor's answer; `reason` is the `StreamRefused` reason for a refusal."""

    OK = 0
    PORT_NOT_EXPOSED = 1  # neither in EXPOSE_PORTS nor served in-process
    CONNECT_FAILED = 2  # exposed, but nothing accepts connections on that port
    TOO_MANY_STREAMS = 3  # the acceptor's cap on open streams for this peer

    @property
    def reason(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class StreamOpen:
    port: int


def encode_open(port: int) -> bytes:
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port!r}")
    return _OPEN.pack(STREAM_HEADER_VERSION, port)


def encode_status(status: StreamStatus) -> bytes:
    return bytes([StreamStatus(status)])


def decode_open(data: bytes) -> StreamOpen | None:
    """The open header at the start of `data`; None while `data` is shorter than
    `OPEN_HEADER_BYTES`. Raises StreamHeaderError as soon as the bytes so far cannot
    start a header (a wrong version at the first byte), or for port 0."""
    if data and data[0] != STREAM_HEADER_VERSION:
        raise StreamHeaderError(
            f"stream header version {data[0]} (this worker speaks {STREAM_HEADER_VERSION})"
        )
    if len(data) < OPEN_HEADER_BYTES:
        return None
    _, port = _OPEN.unpack_from(data)
    if port == 0:
        raise StreamHeaderError("stream header names port 0")
    return StreamOpen(port)


def decode_status(data: bytes) -> StreamStatus:
    """The status byte at the start of `data` (StreamHeaderError: none, or unknown)."""
    if not data:
        raise StreamHeaderError("no stream status")
    try:
        return StreamStatus(data[0])
    except ValueError:
        raise StreamHeaderError(f"unknown stream status {data[0]}") from None
