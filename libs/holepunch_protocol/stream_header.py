"""The first bytes of every data-plane stream between two workers.

The side that opens a QUIC stream writes an open header naming the port it wants on the
peer's loopback; the side that accepts answers one status byte before any data:

    open header   version (1) = STREAM_HEADER_VERSION | port (2, big-endian, 1..65535)
    status        one `StreamStatus` byte

After `OK` both directions carry the application's bytes; after any other status the
acceptor ends the stream. The decoders are incremental (a header may arrive split across
QUIC frames): `feed` returns the decoded value once it is whole, with the bytes after it,
and raises `StreamHeaderError` for anything that is not a header, so garbage is refused at
its first byte instead of being waited on.

Pure: no sockets, no clocks.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "STREAM_HEADER_VERSION",
    "OpenHeaderDecoder",
    "StatusDecoder",
    "StreamHeaderError",
    "StreamOpen",
    "StreamStatus",
    "encode_open",
    "encode_status",
]

STREAM_HEADER_VERSION = 1
_OPEN = struct.Struct("!BH")


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


T = TypeVar("T")


class _FixedSizeDecoder(Generic[T]):
    size: int

    def __init__(self) -> None:
        self._buffer = b""
        self.done = False

    def _check_prefix(self, prefix: bytes) -> None:
        """Raise StreamHeaderError as soon as the bytes so far cannot start a header."""

    def _parse(self, whole: bytes) -> T:
        raise NotImplementedError

    def feed(self, data: bytes) -> tuple[T, bytes] | None:
        """(value, the bytes after it) once the header is whole, None until then."""
        if self.done:
            raise StreamHeaderError("the header was already decoded")
        self._buffer += data
        self._check_prefix(self._buffer[: self.size])
        if len(self._buffer) < self.size:
            return None
        whole, rest = self._buffer[: self.size], self._buffer[self.size :]
        value = self._parse(whole)
        self.done, self._buffer = True, b""
        return value, rest


class OpenHeaderDecoder(_FixedSizeDecoder[StreamOpen]):
    size = _OPEN.size

    def _check_prefix(self, prefix: bytes) -> None:
        if prefix and prefix[0] != STREAM_HEADER_VERSION:
            raise StreamHeaderError(
                f"stream header version {prefix[0]} (this worker speaks {STREAM_HEADER_VERSION})"
            )

    def _parse(self, whole: bytes) -> StreamOpen:
        _, port = _OPEN.unpack(whole)
        if port == 0:
            raise StreamHeaderError("stream header names port 0")
        return StreamOpen(port)


class StatusDecoder(_FixedSizeDecoder[StreamStatus]):
    size = 1

    def _check_prefix(self, prefix: bytes) -> None:
        if prefix and prefix[0] not in StreamStatus._value2member_map_:
            raise StreamHeaderError(f"unknown stream status {prefix[0]}")

    def _parse(self, whole: bytes) -> StreamStatus:
        return StreamStatus(whole[0])
