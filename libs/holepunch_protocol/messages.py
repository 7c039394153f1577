"""Message types of the worker <-> rendezvous WebSocket protocol.

Every frame is a JSON object with a "type". Client messages go from a worker to the
rendezvous, server messages the other way. `from_fields` validates a decoded object;
`to_fields` gives the JSON object to send. Unknown extra fields are ignored so that
newer peers can add optional fields without breaking older ones.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from holepunch_protocol.errors import ErrorCode, ProtocolError
from holepunch_protocol.peer_datagrams import (
    MAX_PEER_DATAGRAM_BYTES,
    SECRET_BYTES,
    SESSION_ID_BYTES,
)
from holepunch_protocol.validation import (
    WORKER_ID_MAX_LENGTH,
    WORKER_ID_PATTERN,
    parse_ip_literal,
    validate_port,
)
from holepunch_protocol.worker_keys import (
    NONCE_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    b64url_decode,
)

__all__ = [
    "LIST_PEERS_DEFAULT_LIMIT",
    "LIST_PEERS_MAX_LIMIT",
    "PUNCH_RESULT_MAX_ATTEMPTS",
    "PUNCH_RESULT_MAX_MS",
    "SECRET_HEX",
    "SESSION_ID_HEX",
    "AckStatus",
    "AuthChallenge",
    "AuthProof",
    "ClientMessage",
    "ConnectRequest",
    "EchoRequest",
    "EchoResponse",
    "ErrorMessage",
    "GetMyDetails",
    "ListPeers",
    "MappingBehaviour",
    "MyDetailsResponse",
    "PathKind",
    "PeerEntry",
    "PeerIntroduction",
    "PeerRole",
    "Peers",
    "PunchFailureReason",
    "PunchResult",
    "PunchStatus",
    "RegisterPublicIp",
    "RelayDatagram",
    "ServerMessage",
    "UdpEndpointAck",
    "UpdateUdpEndpoint",
]

Fields = Mapping[str, Any]
E = TypeVar("E", bound=enum.Enum)

# Session ids and secrets travel as lowercase hex of the bytes the datagrams use.
SESSION_ID_HEX = 2 * SESSION_ID_BYTES
SECRET_HEX = 2 * SECRET_BYTES
# A punch_result's counters stay in these bounds (a day of milliseconds); the worker
# clamps what it reports to them.
PUNCH_RESULT_MAX_ATTEMPTS = 1_000_000
PUNCH_RESULT_MAX_MS = 86_400_000


class MappingBehaviour(enum.StrEnum):
    """How the NAT maps the worker's UDP socket (RFC 4787 terms)."""

    ENDPOINT_INDEPENDENT = "endpoint_independent"
    ENDPOINT_DEPENDENT = "endpoint_dependent"
    UNKNOWN = "unknown"


class AckStatus(enum.StrEnum):
    SUCCESS = "success"
    ERROR = "error"


def _required(fields: Fields, name: str, message_type: str) -> Any:
    if name not in fields or fields[name] is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, f"missing field {name!r}", message_type)
    return fields[name]


def _string(fields: Fields, name: str, message_type: str, *, max_length: int) -> str:
    value = _required(fields, name, message_type)
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name} must be a string", message_type)
    if len(value) > max_length:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{name} is longer than {max_length} characters", message_type
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # JSON "\ud800" decodes to a lone surrogate
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"{name} is not valid Unicode text", message_type
            ) from None
    return value


def _optional_string(fields: Fields, name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) else None


def _optional_port(fields: Fields, name: str) -> int | None:
    value = fields.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    return None


def _hex(fields: Fields, name: str, message_type: str, *, length: int) -> str:
    value = _string(fields, name, message_type, max_length=length)
    if len(value) != length or not all(c in "0123456789abcdef" for c in value):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{name} must be {length} lowercase hex digits", message_type
        )
    return value


def _b64url(fields: Fields, name: str, message_type: str, *, length: int) -> str:
    value = _string(fields, name, message_type, max_length=4 * length // 3 + 4)
    try:
        b64url_decode(value, length)
    except ValueError:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{name} must be base64url of {length} bytes", message_type
        ) from None
    return value.rstrip("=")


def _worker_id(fields: Fields, name: str, message_type: str) -> str:
    value = _string(fields, name, message_type, max_length=WORKER_ID_MAX_LENGTH)
    if not WORKER_ID_PATTERN.fullmatch(value):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{name} is not a valid worker_id", message_type
        )
    return value


def _count(fields: Fields, name: str, message_type: str, *, maximum: int) -> int:
    value = _required(fields, name, message_type)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{name} must be an integer in 0..{maximum}", message_type
        )
    return value


def _milliseconds(
    fields: Fields, name: str, message_type: str, *, required: bool, maximum: int
) -> float | None:
    value = fields.get(name)
    if value is None:
        if required:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"missing field {name!r}", message_type)
        return None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= value <= maximum
    ):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{name} must be a number of milliseconds", message_type
        )
    return float(value)


def _enum(fields: Fields, name: str, message_type: str, kind: type[E]) -> E:
    raw = _required(fields, name, message_type)
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in kind)
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{name} must be one of: {allowed}", message_type
        ) from None


# ---------------------------------------------------------------- worker -> rendezvous


@dataclass(frozen=True, slots=True)
class RegisterPublicIp:
    """The worker's public IP as an HTTP echo service saw it."""

    TYPE: ClassVar[str] = "register_public_ip"
    ip: str

    @classmethod
    def from_fields(cls, fields: Fields) -> RegisterPublicIp:
        return cls(ip=parse_ip_literal(_required(fields, "ip", cls.TYPE), "ip", cls.TYPE))

    def to_fields(self) -> dict[str, Any]:
        return {"type": self.TYPE, "ip": self.ip}


@dataclass(frozen=True, slots=True)
class UpdateUdpEndpoint:
    """The public mapping of the worker's UDP socket, as STUN reported it."""

    TYPE: ClassVar[str] = "update_udp_endpoint"
    udp_ip: str
    udp_port: int
    mapping: MappingBehaviour | None = None
    local_port: int | None = None

    @classmethod
    def from_fields(cls, fields: Fields) -> UpdateUdpEndpoint:
        udp_ip = parse_ip_literal(_required(fields, "udp_ip", cls.TYPE), "udp_ip", cls.TYPE)
        udp_port = validate_port(_required(fields, "udp_port", cls.TYPE), "udp_port", cls.TYPE)
        mapping: MappingBehaviour | None = None
        raw_mapping = fields.get("mapping")
        if raw_mapping is not None:
            try:
                mapping = MappingBehaviour(raw_mapping)
            except ValueError:
                allowed = ", ".join(m.value for m in MappingBehaviour)
                raise ProtocolError(
                    ErrorCode.INVALID_FIELD, f"mapping must be one of: {allowed}", cls.TYPE
                ) from None
        local_port = fields.get("local_port")
        if local_port is not None:
            local_port = validate_port(local_port, "local_port", cls.TYPE)
        return cls(udp_ip=udp_ip, udp_port=udp_port, mapping=mapping, local_port=local_port)

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "type": self.TYPE,
            "udp_ip": self.udp_ip,
            "udp_port": self.udp_port,
        }
        if self.mapping is not None:
            fields["mapping"] = self.mapping.value
        if self.local_port is not None:
            fields["local_port"] = self.local_port
        return fields


ECHO_PAYLOAD_MAX_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class EchoRequest:
    TYPE: ClassVar[str] = "echo_request"
    payload: str

    @classmethod
    def from_fields(cls, fields: Fields) -> EchoRequest:
        return cls(payload=_string(fields, "payload", cls.TYPE, max_length=ECHO_PAYLOAD_MAX_LENGTH))

    def to_fields(self) -> dict[str, Any]:
        return {"type": self.TYPE, "payload": self.payload}


@dataclass(frozen=True, slots=True)
class GetMyDetails:
    TYPE: ClassVar[str] = "get_my_details"

    @classmethod
    def from_fields(cls, fields: Fields) -> GetMyDetails:
        return cls()

    def to_fields(self) -> dict[str, Any]:
        return {"type": self.TYPE}


def _optional_request_id(fields: Fields, message_type: str) -> int | None:
    if fields.get("request_id") is None:
        return None
    return _count(fields, "request_id", message_type, maximum=REQUEST_ID_MAX)


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """Ask the rendezvous to introduce this worker to `peer_id` for hole punching.

    `request_id`, if given, comes back in the answer: in the `error` that refuses the
    introduction, or in the `peer_introduction` this worker receives, so the worker can
    tell which request was answered. Without it (workers of the original design) the
    answers are the same, without the field."""

    TYPE: ClassVar[str] = "connect_request"
    peer_id: str
    request_id: int | None = None

    @classmethod
    def from_fields(cls, fields: Fields) -> ConnectRequest:
        t = cls.TYPE
        return cls(
            peer_id=_worker_id(fields, "peer_id", t),
            request_id=_optional_request_id(fields, t),
        )

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"type": self.TYPE, "peer_id": self.peer_id}
        if self.request_id is not None:
            fields["request_id"] = self.request_id
        return fields


class PunchStatus(enum.StrEnum):
    CONNECTED = "connected"  # a direct UDP path works
    RELAYED = "relayed"  # no direct path (yet): datagrams go through the rendezvous
    FAILED = "failed"


class PathKind(enum.StrEnum):
    DIRECT = "direct"
    RELAY = "relay"
    NONE = "none"


class PunchFailureReason(enum.StrEnum):
    """Why a `failed` punch result never started (absent: it tried and found no path)."""

    # The worker's probe budget refused a new address (holepunch_worker.probe_budget).
    PROBE_BUDGET = "probe_budget"


@dataclass(frozen=True, slots=True)
class PunchResult:
    """How a punch session ended up, reported by each side."""

    TYPE: ClassVar[str] = "punch_result"
    session_id: str
    peer_id: str
    status: PunchStatus
    path: PathKind
    attempts: int
    elapsed_ms: float
    rtt_ms: float | None = None
    peer_udp_ip: str | None = None  # the address that worked (peer-reflexive if it moved)
    peer_udp_port: int | None = None
    reason: PunchFailureReason | None = None

    @classmethod
    def from_fields(cls, fields: Fields) -> PunchResult:
        t = cls.TYPE
        peer_ip = fields.get("peer_udp_ip")
        peer_port = fields.get("peer_udp_port")
        reason = fields.get("reason")
        elapsed = _milliseconds(fields, "elapsed_ms", t, required=True, maximum=PUNCH_RESULT_MAX_MS)
        assert elapsed is not None
        return cls(
            session_id=_hex(fields, "session_id", t, length=SESSION_ID_HEX),
            peer_id=_worker_id(fields, "peer_id", t),
            status=_enum(fields, "status", t, PunchStatus),
            path=_enum(fields, "path", t, PathKind),
            attempts=_count(fields, "attempts", t, maximum=PUNCH_RESULT_MAX_ATTEMPTS),
            elapsed_ms=elapsed,
            rtt_ms=_milliseconds(fields, "rtt_ms", t, required=False, maximum=PUNCH_RESULT_MAX_MS),
            peer_udp_ip=None if peer_ip is None else parse_ip_literal(peer_ip, "peer_udp_ip", t),
            peer_udp_port=None
            if peer_port is None
            else validate_port(peer_port, "peer_udp_port", t),
            reason=None if reason is None else _enum(fields, "reason", t, PunchFailureReason),
        )

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "type": self.TYPE,
            "session_id": self.session_id,
            "peer_id": self.peer_id,
            "status": self.status.value,
            "path": self.path.value,
            "attempts": self.attempts,
            "elapsed_ms": self.elapsed_ms,
        }
        for name in ("rtt_ms", "peer_udp_ip", "peer_udp_port"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        if self.reason is not None:
            fields["reason"] = self.reason.value
        return fields


@dataclass(frozen=True, slots=True)
class RelayDatagram:
    """A sealed peer datagram carried over the WebSocket when no direct path works.

    The same message goes worker -> rendezvous -> peer; the rendezvous forwards it to the
    other worker of `session_id` without opening it.
    """

    TYPE: ClassVar[str] = "relay_datagram"
    session_id: str
    data: bytes

    @classmethod
    def from_fields(cls, fields: Fields) -> RelayDatagram:
        t = cls.TYPE
        session_id = _hex(fields, "session_id", t, length=SESSION_ID_HEX)
        encoded = _string(fields, "data", t, max_length=4 * MAX_PEER_DATAGRAM_BYTES // 3 + 4)
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "data must be base64", t) from None
        if not data:
            raise ProtocolError(ErrorCode.INVALID_FIELD, "data is empty", t)
        return cls(session_id=session_id, data=data)

    def to_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "session_id": self.session_id,
            "data": base64.b64encode(self.data).decode("ascii"),
        }


# A list_peers page holds at most this many workers (as /debug/list_workers's limit).
LIST_PEERS_MAX_LIMIT = 1000
LIST_PEERS_DEFAULT_LIMIT = 100
REQUEST_ID_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ListPeers:
    """Which workers may this worker be introduced to? One page, after `cursor`;
    `request_id`, if given, comes back in the `peers` answer."""

    TYPE: ClassVar[str] = "list_peers"
    limit: int = LIST_PEERS_DEFAULT_LIMIT
    cursor: str | None = None
    request_id: int | None = None

    @classmethod
    def from_fields(cls, fields: Fields) -> ListPeers:
        t = cls.TYPE
        limit = fields.get("limit")
        if limit is None:
            limit = LIST_PEERS_DEFAULT_LIMIT
        elif (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= LIST_PEERS_MAX_LIMIT
        ):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"limit must be an integer in 1..{LIST_PEERS_MAX_LIMIT}", t
            )
        cursor = None if fields.get("cursor") is None else _worker_id(fields, "cursor", t)
        return cls(limit=limit, cursor=cursor, request_id=_optional_request_id(fields, t))

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"type": self.TYPE, "limit": self.limit}
        if self.cursor is not None:
            fields["cursor"] = self.cursor
        if self.request_id is not None:
            fields["request_id"] = self.request_id
        return fields


@dataclass(frozen=True, slots=True)
class AuthProof:
    """The worker's answer to `auth_challenge`: its public key and its Ed25519 signature
    of `registration_message(nonce, worker_id)` (both unpadded base64url)."""

    TYPE: ClassVar[str] = "auth_proof"
    public_key: str
    signature: str

    @classmethod
    def from_fields(cls, fields: Fields) -> AuthProof:
        t = cls.TYPE
        return cls(
            public_key=_b64url(fields, "public_key", t, length=PUBLIC_KEY_BYTES),
            signature=_b64url(fields, "signature", t, length=SIGNATURE_BYTES),
        )

    def to_fields(self) -> dict[str, Any]:
        return {"type": self.TYPE, "public_key": self.public_key, "signature": self.signature}


ClientMessage = (
    RegisterPublicIp
    | UpdateUdpEndpoint
    | EchoRequest
    | GetMyDetails
    | ConnectRequest
    | PunchResult
    | RelayDatagram
    | ListPeers
    | AuthProof
)

# ---------------------------------------------------------------- rendezvous -> worker


@dataclass(frozen=True, slots=True)
class UdpEndpointAck:
    TYPE: ClassVar[str] = "udp_endpoint_ack"
    status: AckStatus
    detail: str | None = None

    @classmethod
    def from_fields(cls, fields: Fields) -> UdpEndpointAck:
        raw_status = _required(fields, "status", cls.TYPE)
        try:
            status = AckStatus(raw_status)
        except ValueError:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "status must be 'success' or 'error'", cls.TYPE
            ) from None
        return cls(status=status, detail=_optional_string(fields, "detail"))

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"type": self.TYPE, "status": self.status.value}
        if self.detail is not None:
            fields["detail"] = self.detail
        return fields


@dataclass(frozen=True, slots=True)
class EchoResponse:
    TYPE: ClassVar[str] = "echo_response"
    original_payload: str
    processed_by_rendezvous: str

    @classmethod
    def for_request(cls, request: EchoRequest, worker_id: str) -> EchoResponse:
        processed = f"Rendezvous processed: '{request.payload.upper()}' for worker {worker_id}"
        return cls(original_payload=request.payload, processed_by_rendezvous=processed)

    @classmethod
    def from_fields(cls, fields: Fields) -> EchoResponse:
        limit = 2 * ECHO_PAYLOAD_MAX_LENGTH + 256
        return cls(
            original_payload=_string(fields, "original_payload", cls.TYPE, max_length=limit),
            processed_by_rendezvous=_string(
                fields, "processed_by_rendezvous", cls.TYPE, max_length=limit
            ),
        )

    def to_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "original_payload": self.original_payload,
            "processed_by_rendezvous": self.processed_by_rendezvous,
        }


@dataclass(frozen=True, slots=True)
class MyDetailsResponse:
    TYPE: ClassVar[str] = "my_details_response"
    worker_id: str
    registered_ip: str | None
    registered_port: int | None
    udp_ip: str | None
    udp_port: int | None
    message: str = "These are your details as seen by the Rendezvous service."

    @classmethod
    def from_fields(cls, fields: Fields) -> MyDetailsResponse:
        return cls(
            worker_id=_string(fields, "worker_id", cls.TYPE, max_length=256),
            registered_ip=_optional_string(fields, "registered_ip"),
            registered_port=_optional_port(fields, "registered_port"),
            udp_ip=_optional_string(fields, "udp_ip"),
            udp_port=_optional_port(fields, "udp_port"),
            message=_optional_string(fields, "message") or "",
        )

    def to_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "worker_id": self.worker_id,
            "registered_ip": self.registered_ip,
            "registered_port": self.registered_port,
            "udp_ip": self.udp_ip,
            "udp_port": self.udp_port,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """`request_id`: the refused request's own, when it carried one (`connect_request`)."""

    TYPE: ClassVar[str] = "error"
    code: str
    detail: str
    request_id: int | None = None

    @classmethod
    def from_error(cls, error: ProtocolError, request_id: int | None = None) -> ErrorMessage:
        return cls(code=error.code.value, detail=error.detail, request_id=request_id)

    @classmethod
    def from_fields(cls, fields: Fields) -> ErrorMessage:
        return cls(
            code=_string(fields, "code", cls.TYPE, max_length=64),
            detail=_optional_string(fields, "detail") or "",
            request_id=_optional_request_id(fields, cls.TYPE),
        )

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"type": self.TYPE, "code": self.code, "detail": self.detail}
        if self.request_id is not None:
            fields["request_id"] = self.request_id
        return fields


class PeerRole(enum.StrEnum):
    INITIATOR = "initiator"  # asked for the introduction
    RESPONDER = "responder"


@dataclass(frozen=True, slots=True)
class PeerIntroduction:
    """Sent to both workers of a new session: punch towards the peer now."""

    TYPE: ClassVar[str] = "peer_introduction"
    session_id: str
    peer_id: str
    peer_udp_ip: str
    peer_udp_port: int
    peer_mapping: MappingBehaviour | None
    secret: str  # hex; keys the HMAC of every datagram of the session
    role: PeerRole
    # Either side's mapping is endpoint-dependent: start on the relay, keep trying direct.
    relay_first: bool = False
    # The peer's public key (base64url); None for a keyless worker of the original design.
    peer_public_key: str | None = None
    # The initiator's copy: its connect_request's request_id, if it sent one.
    request_id: int | None = None

    @classmethod
    def from_fields(cls, fields: Fields) -> PeerIntroduction:
        t = cls.TYPE
        mapping = fields.get("peer_mapping")
        relay_first = fields.get("relay_first", False)
        if not isinstance(relay_first, bool):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "relay_first must be a boolean", t)
        return cls(
            session_id=_hex(fields, "session_id", t, length=SESSION_ID_HEX),
            peer_id=_worker_id(fields, "peer_id", t),
            peer_udp_ip=parse_ip_literal(_required(fields, "peer_udp_ip", t), "peer_udp_ip", t),
            peer_udp_port=validate_port(_required(fields, "peer_udp_port", t), "peer_udp_port", t),
            peer_mapping=None
            if mapping is None
            else _enum(fields, "peer_mapping", t, MappingBehaviour),
            secret=_hex(fields, "secret", t, length=SECRET_HEX),
            role=_enum(fields, "role", t, PeerRole),
            relay_first=relay_first,
            peer_public_key=None
            if fields.get("peer_public_key") is None
            else _b64url(fields, "peer_public_key", t, length=PUBLIC_KEY_BYTES),
            request_id=_optional_request_id(fields, t),
        )

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "type": self.TYPE,
            "session_id": self.session_id,
            "peer_id": self.peer_id,
            "peer_udp_ip": self.peer_udp_ip,
            "peer_udp_port": self.peer_udp_port,
            "peer_mapping": None if self.peer_mapping is None else self.peer_mapping.value,
            "secret": self.secret,
            "role": self.role.value,
            "relay_first": self.relay_first,
            "peer_public_key": self.peer_public_key,
        }
        if self.request_id is not None:
            fields["request_id"] = self.request_id
        return fields


@dataclass(frozen=True, slots=True)
class PeerEntry:
    """A worker a `peers` page lists: its id, tags and NAT mapping (None: not known yet)."""

    worker_id: str
    tags: tuple[str, ...]
    mapping: MappingBehaviour | None

    @classmethod
    def from_fields(cls, fields: Any) -> PeerEntry:
        t = Peers.TYPE
        if not isinstance(fields, dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "each peer must be an object", t)
        tags = fields.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "tags must be a list of strings", t)
        mapping = fields.get("mapping")
        return cls(
            worker_id=_worker_id(fields, "worker_id", t),
            tags=tuple(tags),
            mapping=None if mapping is None else _enum(fields, "mapping", t, MappingBehaviour),
        )

    def to_fields(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "tags": list(self.tags),
            "mapping": None if self.mapping is None else self.mapping.value,
        }


@dataclass(frozen=True, slots=True)
class Peers:
    """The answer to list_peers: the workers of one page that the policy lets the asker
    reach. A page may hold fewer than `limit` (even none) while `next_cursor` is set:
    keep asking from `next_cursor` until it is null."""

    TYPE: ClassVar[str] = "peers"
    peers: tuple[PeerEntry, ...]
    next_cursor: str | None
    request_id: int | None = None

    @classmethod
    def from_fields(cls, fields: Fields) -> Peers:
        t = cls.TYPE
        raw = _required(fields, "peers", t)
        if not isinstance(raw, list):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "peers must be a list", t)
        cursor = None if fields.get("next_cursor") is None else _worker_id(fields, "next_cursor", t)
        return cls(
            peers=tuple(PeerEntry.from_fields(entry) for entry in raw),
            next_cursor=cursor,
            request_id=_optional_request_id(fields, t),
        )

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "type": self.TYPE,
            "peers": [peer.to_fields() for peer in self.peers],
            "next_cursor": self.next_cursor,
        }
        if self.request_id is not None:
            fields["request_id"] = self.request_id
        return fields


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """Sent right after the upgrade to a worker that named a public key: sign this nonce
    (unpadded base64url of `NONCE_BYTES` fresh random bytes) to register."""

    TYPE: ClassVar[str] = "auth_challenge"
    nonce: str

    @classmethod
    def from_fields(cls, fields: Fields) -> AuthChallenge:
        return cls(nonce=_b64url(fields, "nonce", cls.TYPE, length=NONCE_BYTES))

    def to_fields(self) -> dict[str, Any]:
        return {"type": self.TYPE, "nonce": self.nonce}


ServerMessage = (
    UdpEndpointAck
    | EchoResponse
    | MyDetailsResponse
    | ErrorMessage
    | PeerIntroduction
    | RelayDatagram
    | Peers
    | AuthChallenge
)
