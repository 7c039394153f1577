"""JSON text frames <-> message objects."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, get_args

from holepunch_protocol.errors import ErrorCode, ProtocolError
from holepunch_protocol.messages import ClientMessage, ServerMessage

__all__ = ["MAX_FRAME_BYTES", "decode_client_message", "decode_server_message", "encode_message"]

# Largest text frame either side accepts. The biggest legitimate message is an echo
# of a 4 KiB payload; 16 KiB leaves room without letting a client make us parse megabytes.
MAX_FRAME_BYTES = 16 * 1024

# Each side's decoder table, from the union that types its messages: a message type
# added to the union is decodable, with nothing else to list.
_CLIENT_TYPES: dict[str, Any] = {cls.TYPE: cls for cls in get_args(ClientMessage)}
_SERVER_TYPES: dict[str, Any] = {cls.TYPE: cls for cls in get_args(ServerMessage)}


def _decode_object(frame: str | bytes) -> dict[str, Any]:
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE, f"frame is longer than {MAX_FRAME_BYTES} characters"
        )
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.INVALID_JSON, "frame is not valid JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.NOT_AN_OBJECT, "frame must be a JSON object")
    return value


def _decode(frame: str | bytes, types: Mapping[str, Any]) -> Any:
    fields = _decode_object(frame)
    message_type = fields.get("type")
    if message_type is None:
        raise ProtocolError(ErrorCode.MISSING_TYPE, "missing field 'type'")
    if not isinstance(message_type, str) or message_type not in types:
        shown = message_type if isinstance(message_type, str) else type(message_type).__name__
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {shown[:64]!r}")
    return types[message_type].from_fields(fields)


def decode_client_message(frame: str | bytes) -> ClientMessage:
    """Parse and validate a worker's frame; raise ProtocolError on anything else."""
    message: ClientMessage = _decode(frame, _CLIENT_TYPES)
    return message


def decode_server_message(frame: str | bytes) -> ServerMessage:
    """Parse and validate a rendezvous frame; raise ProtocolError on anything else."""
    message: ServerMessage = _decode(frame, _SERVER_TYPES)
    return message


def encode_message(message: ClientMessage | ServerMessage) -> str:
    return json.dumps(message.to_fields(), separators=(",", ":"), ensure_ascii=False)
