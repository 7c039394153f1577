"""The SOCKS5 handshake (RFC 1928) as a pure machine: bytes in, what to answer out.

Only what the worker's proxy serves: method 0x00 (no authentication) and the CONNECT
command, to a host named `<worker_id>.holepunch`. The I/O layer feeds every received
chunk to `Socks5Handshake.receive_data`; the `HandshakeStep` it gets back says what to
send, and whether the client asked to connect (then the I/O layer answers with
`encode_reply`) or must be closed.

Both messages a client sends have a bounded size (a greeting at most 257 bytes, a
request at most 262), so the machine never holds more than one message: bytes after
the request are the client's first data, handed back as `early_data`.

No library does this for us: PyPI's asyncio SOCKS5 *servers* are small, unmaintained or
whole proxy frameworks (checked 2026-11: siosocks 0.3.0 of 2022, asyncio-socks-server,
soxyproxy), while this is some 150 lines, fuzzed (tests/fuzz/test_fuzz_socks5.py).
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from holepunch_protocol import ProtocolError, validate_worker_id

from holepunch_worker.dataplane.interface import (
    ConnectRefused,
    DataPlaneError,
    PeerUnavailable,
    StreamRefused,
)

__all__ = [
    "PEER_HOST_SUFFIX",
    "SOCKS4_REJECTED",
    "SOCKS_VERSION",
    "AddressType",
    "ConnectRequest",
    "HandshakeStep",
    "PeerTarget",
    "Reply",
    "Socks5Handshake",
    "TargetRefused",
    "encode_reply",
    "reply_for_error",
    "resolve_target",
]

SOCKS_VERSION = 5
NO_AUTHENTICATION = 0x00
NO_ACCEPTABLE_METHODS = 0xFF
CONNECT = 0x01
PEER_HOST_SUFFIX = ".holepunch"
# What a SOCKS4 client gets (VN 0, CD 91 "request rejected or failed"): it speaks the
# wrong version, and this tells it so in words it understands.
SOCKS4_REJECTED = bytes([0, 91, 0, 0, 0, 0, 0, 0])


class Reply(enum.IntEnum):
    """RFC 1928 section 6's REP field."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class AddressType(enum.IntEnum):
    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


_ADDRESS_TYPES = frozenset(AddressType)


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """A CONNECT the client asked for: `host` is the domain name as sent, or an IP
    address's text."""

    address_type: AddressType
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class HandshakeStep:
    """What one `receive_data` call asks of the I/O layer, in this order: send
    `to_send`; then, if `close`, close the connection (`reason` says why, for the log);
    else, if `request` is set, connect and answer with `encode_reply`, then relay
    `early_data` and everything after it."""

    to_send: bytes = b""
    request: ConnectRequest | None = None
    early_data: bytes = b""
    close: bool = False
    reason: str | None = None


class _State(enum.Enum):
    GREETING = enum.auto()
    REQUEST = enum.auto()
    DONE = enum.auto()


class Socks5Handshake:
    """One client's handshake, fed in chunks of any size. After a step with `request`
    or `close`, the handshake is over and further data is refused."""

    def __init__(self) -> None:
        self._state = _State.GREETING
        self._buffer = b""

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an incomplete message: at most one message's worth."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> HandshakeStep:
        if self._state is _State.DONE:
            raise RuntimeError("the SOCKS5 handshake is over")
        self._buffer += data
        to_send = b""
        if self._state is _State.GREETING:
            greeting = self._take_greeting()
            if greeting is None:
                return HandshakeStep()
            if isinstance(greeting, HandshakeStep):
                return self._finish(greeting)
            to_send = greeting
            self._state = _State.REQUEST
        step = self._take_request()
        if step is None:
            return HandshakeStep(to_send=to_send)
        return self._finish(
            HandshakeStep(
                to_send=to_send + step.to_send,
                request=step.request,
                early_data=step.early_data,
                close=step.close,
                reason=step.reason,
            )
        )

    def _finish(self, step: HandshakeStep) -> HandshakeStep:
        self._state = _State.DONE
        self._buffer = b""
        return step

    def _take_greeting(self) -> bytes | HandshakeStep | None:
        """VER NMETHODS METHODS...: the method-selection answer, a failing step, or
        None while incomplete."""
        buffer = self._buffer
        if not buffer:
            return None
        if buffer[0] != SOCKS_VERSION:
            if buffer[0] == 4:
                return _fail(SOCKS4_REJECTED, "socks4_not_supported")
            return _fail(b"", "not_socks5")
        if len(buffer) < 2 or len(buffer) < 2 + buffer[1]:
            return None
        methods = buffer[2 : 2 + buffer[1]]
        self._buffer = buffer[2 + buffer[1] :]
        if NO_AUTHENTICATION not in methods:
            return _fail(bytes([SOCKS_VERSION, NO_ACCEPTABLE_METHODS]), "no_acceptable_method")
        return bytes([SOCKS_VERSION, NO_AUTHENTICATION])

    def _take_request(self) -> HandshakeStep | None:
        """VER CMD RSV ATYP DST.ADDR DST.PORT: a step, or None while incomplete."""
        buffer = self._buffer
        if len(buffer) < 4:
            if buffer and buffer[0] != SOCKS_VERSION:
                return _refuse(Reply.GENERAL_FAILURE, "not_socks5")
            return None
        version, command, _reserved, raw_type = buffer[:4]
        if version != SOCKS_VERSION:
            return _refuse(Reply.GENERAL_FAILURE, "not_socks5")
        if command != CONNECT:
            # Refused at once: whatever follows, the answer is the same.
            return _refuse(Reply.COMMAND_NOT_SUPPORTED, "command_not_supported")
        if raw_type not in _ADDRESS_TYPES:
            return _refuse(Reply.ADDRESS_TYPE_NOT_SUPPORTED, "address_type_not_supported")
        address_type = AddressType(raw_type)
        if address_type is AddressType.IPV4:
            address_end = 8
        elif address_type is AddressType.IPV6:
            address_end = 20
        else:
            if len(buffer) < 5:
                return None
            address_end = 5 + buffer[4]
        if len(buffer) < address_end + 2:
            return None
        raw_address = buffer[4:address_end]
        port = int.from_bytes(buffer[address_end : address_end + 2], "big")
        early_data = buffer[address_end + 2 :]
        if address_type is AddressType.DOMAIN:
            try:
                host = raw_address[1:].decode("ascii")
            except UnicodeDecodeError:
                return _refuse(Reply.HOST_UNREACHABLE, "invalid_host")
        else:
            host = str(ipaddress.ip_address(raw_address))
        return HandshakeStep(
            request=ConnectRequest(address_type, host, port), early_data=early_data
        )


def _fail(to_send: bytes, reason: str) -> HandshakeStep:
    return HandshakeStep(to_send=to_send, close=True, reason=reason)


def _refuse(reply: Reply, reason: str) -> HandshakeStep:
    return _fail(encode_reply(reply), reason)


def encode_reply(reply: Reply) -> bytes:
    """VER REP RSV ATYP BND.ADDR BND.PORT, with 0.0.0.0:0 as the bound address: the
    stream's far end is a port on the peer's loopback, which means nothing here."""
    return bytes([SOCKS_VERSION, reply, 0, AddressType.IPV4, 0, 0, 0, 0, 0, 0])


@dataclass(frozen=True, slots=True)
class PeerTarget:
    peer_id: str
    port: int


@dataclass(frozen=True, slots=True)
class TargetRefused:
    reply: Reply
    reason: str
    detail: str


def resolve_target(request: ConnectRequest, own_worker_id: str) -> PeerTarget | TargetRefused:
    """`<worker_id>.holepunch:port` names a peer's port; nothing else is reachable."""
    if request.address_type is not AddressType.DOMAIN:
        return TargetRefused(
            Reply.NOT_ALLOWED,
            "not_a_peer",
            f"{request.host} is an IP address: only <worker_id>{PEER_HOST_SUFFIX} hosts "
            "are reachable (let the proxy resolve names: socks5h, --socks5-hostname)",
        )
    host = request.host.removesuffix(".")
    if not host.lower().endswith(PEER_HOST_SUFFIX):
        return TargetRefused(
            Reply.NOT_ALLOWED,
            "not_a_peer",
            f"{host[:80]!r} is not <worker_id>{PEER_HOST_SUFFIX}",
        )
    peer_id = host[: -len(PEER_HOST_SUFFIX)]
    try:
        validate_worker_id(peer_id)
    except ProtocolError as error:
        return TargetRefused(Reply.HOST_UNREACHABLE, "invalid_peer_id", error.detail)
    if peer_id == own_worker_id:
        return TargetRefused(Reply.NOT_ALLOWED, "self", "the host names this worker itself")
    if request.port == 0:
        return TargetRefused(Reply.NOT_ALLOWED, "invalid_port", "port 0")
    return PeerTarget(peer_id, request.port)


# The rendezvous's refusals that mean "the policy says no"; others mean "not there".
_NOT_ALLOWED_REASONS = frozenset(
    {"not_allowed", "tag_not_allowed", "self_introduction", "keyless_not_allowed"}
)
# This worker has no way out yet (no endpoint reported, no rendezvous).
_NETWORK_UNREACHABLE_REASONS = frozenset({"no_endpoint", "rendezvous_unavailable"})
_STREAM_REPLIES = {
    "port_not_exposed": Reply.NOT_ALLOWED,
    "connect_failed": Reply.CONNECTION_REFUSED,
    "too_many_streams": Reply.GENERAL_FAILURE,
}


def reply_for_error(error: DataPlaneError) -> Reply:
    """The SOCKS5 answer to a data-plane refusal. A timeout is TTL expired, as Tor
    answers one."""
    if error.reason == "timeout":
        return Reply.TTL_EXPIRED
    if error.reason in _NETWORK_UNREACHABLE_REASONS:
        return Reply.NETWORK_UNREACHABLE
    if isinstance(error, StreamRefused):
        return _STREAM_REPLIES.get(error.reason, Reply.GENERAL_FAILURE)
    if isinstance(error, ConnectRefused):
        if error.reason in _NOT_ALLOWED_REASONS:
            return Reply.NOT_ALLOWED
        return Reply.HOST_UNREACHABLE  # peer_not_found, peer_has_no_endpoint, no_path...
    if isinstance(error, PeerUnavailable):
        return Reply.HOST_UNREACHABLE
    return Reply.GENERAL_FAILURE  # PeerAuthenticationFailed (key_mismatch) among others
