"""Message types of the worker <-> rendezvous WebSocket protocol.

Every frame is a JSON object with a "type". Client messages go from a worker to the
rendezvous, server messages the other way. `from_fields` validates a decoded object;
`to_fields` gives the JSON object to send. Unknown extra fields are ignored so that
newer peers can add optional fields without breaking older ones.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from holepunch_protocol.errors import ErrorCode, ProtocolError
from holepunch_protocol.validation import parse_ip_literal, validate_port

__all__ = [
    "AckStatus",
    "ClientMessage",
    "EchoRequest",
    "EchoResponse",
    "ErrorMessage",
    "GetMyDetails",
    "MappingBehaviour",
    "MyDetailsResponse",
    "RegisterPublicIp",
    "ServerMessage",
    "UdpEndpointAck",
    "UpdateUdpEndpoint",
]

Fields = Mapping[str, Any]


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


ClientMessage = RegisterPublicIp | UpdateUdpEndpoint | EchoRequest | GetMyDetails

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
    TYPE: ClassVar[str] = "error"
    code: str
    detail: str

    @classmethod
    def from_error(cls, error: ProtocolError) -> ErrorMessage:
        return cls(code=error.code.value, detail=error.detail)

    @classmethod
    def from_fields(cls, fields: Fields) -> ErrorMessage:
        return cls(
            code=_string(fields, "code", cls.TYPE, max_length=64),
            detail=_optional_string(fields, "detail") or "",
        )

    def to_fields(self) -> dict[str, Any]:
        return {"type": self.TYPE, "code": self.code, "detail": self.detail}


ServerMessage = UdpEndpointAck | EchoResponse | MyDetailsResponse | ErrorMessage
