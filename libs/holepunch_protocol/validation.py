"""Field validators shared by the decoders and the services."""

from __future__ import annotations

import ipaddress
import re

from holepunch_protocol.errors import ErrorCode, ProtocolError

__all__ = [
    "WORKER_ID_MAX_LENGTH",
    "WORKER_ID_PATTERN",
    "parse_ip_literal",
    "validate_port",
    "validate_worker_id",
]

WORKER_ID_MAX_LENGTH = 64
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# Letters, digits, '.', '_', '-'; starts with a letter or digit (a UUID matches).
WORKER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_worker_id(worker_id: str) -> str:
    if not WORKER_ID_PATTERN.fullmatch(worker_id):
        raise ProtocolError(
            ErrorCode.INVALID_WORKER_ID,
            f"worker_id must match {WORKER_ID_PATTERN.pattern} "
            f"(1-{WORKER_ID_MAX_LENGTH} characters)",
        )
    return worker_id


def parse_ip_literal(value: object, field: str, message_type: str | None = None) -> str:
    """Return the canonical text of an IPv4/IPv6 literal usable as a peer address."""
    if not isinstance(value, str):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{field} must be a string IP literal", message_type
        )
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{field} is not an IP address literal", message_type
        ) from None
    # A peer cannot send to these: "any", multicast, the limited broadcast, or an IPv6
    # address with a zone (%eth0), which only means something on the sender's host.
    # Loopback and private addresses stay valid: labs and `make demo` use them.
    if (
        address.is_unspecified
        or address.is_multicast
        or address == _LIMITED_BROADCAST
        or (isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None)
    ):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"{field} must be a unicast address a peer can send to, not {value}",
            message_type,
        )
    return str(address)


def validate_port(value: object, field: str, message_type: str | None = None) -> int:
    # bool is an int subclass: `true` is not a port.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{field} must be an integer", message_type)
    if not 1 <= value <= 65535:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{field} must be in 1..65535", message_type)
    return value
