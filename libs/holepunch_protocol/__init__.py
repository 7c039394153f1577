"""Wire protocol between holepunch workers and the rendezvous service.

Pure code, no I/O: message types, their validation, and their JSON encoding.
Both services import it, so no message shape is defined twice.
"""

from holepunch_protocol.close_codes import CloseCode
from holepunch_protocol.codec import (
    MAX_FRAME_BYTES,
    decode_client_message,
    decode_server_message,
    encode_message,
)
from holepunch_protocol.datagrams import (
    MAX_TOKEN_BYTES,
    PING_MAGIC,
    PONG_MAGIC,
    encode_ping,
    pong_for,
    pong_token,
)
from holepunch_protocol.errors import ErrorCode, ProtocolError
from holepunch_protocol.messages import (
    AckStatus,
    ClientMessage,
    EchoRequest,
    EchoResponse,
    ErrorMessage,
    GetMyDetails,
    MappingBehaviour,
    MyDetailsResponse,
    RegisterPublicIp,
    ServerMessage,
    UdpEndpointAck,
    UpdateUdpEndpoint,
)
from holepunch_protocol.validation import (
    WORKER_ID_PATTERN,
    parse_ip_literal,
    validate_port,
    validate_worker_id,
)

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_TOKEN_BYTES",
    "PING_MAGIC",
    "PONG_MAGIC",
    "WORKER_ID_PATTERN",
    "AckStatus",
    "ClientMessage",
    "CloseCode",
    "EchoRequest",
    "EchoResponse",
    "ErrorCode",
    "ErrorMessage",
    "GetMyDetails",
    "MappingBehaviour",
    "MyDetailsResponse",
    "ProtocolError",
    "RegisterPublicIp",
    "ServerMessage",
    "UdpEndpointAck",
    "UpdateUdpEndpoint",
    "decode_client_message",
    "decode_server_message",
    "encode_message",
    "encode_ping",
    "parse_ip_literal",
    "pong_for",
    "pong_token",
    "validate_port",
    "validate_worker_id",
]
