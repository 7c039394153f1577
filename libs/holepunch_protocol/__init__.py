"""Wire protocol between holepunch workers and the rendezvous service.

Pure code, no I/O: message types, their validation, and their JSON encoding.
Both services import it, so no message shape is defined twice.
"""

from holepunch_protocol.auth_modes import AuthMode
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
    SECRET_HEX,
    SESSION_ID_HEX,
    AckStatus,
    ClientMessage,
    ConnectRequest,
    EchoRequest,
    EchoResponse,
    ErrorMessage,
    GetMyDetails,
    MappingBehaviour,
    MyDetailsResponse,
    PathKind,
    PeerIntroduction,
    PeerRole,
    PunchResult,
    PunchStatus,
    RegisterPublicIp,
    RelayDatagram,
    ServerMessage,
    UdpEndpointAck,
    UpdateUdpEndpoint,
)
from holepunch_protocol.peer_datagrams import (
    MAX_PEER_PAYLOAD_BYTES,
    PeerDatagram,
    PeerKind,
    ReplayWindow,
    open_peer_datagram,
    peek_session_id,
    seal_peer_datagram,
)
from holepunch_protocol.timestamps import iso_timestamp
from holepunch_protocol.validation import (
    WORKER_ID_PATTERN,
    parse_ip_literal,
    validate_port,
    validate_worker_id,
)

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_PEER_PAYLOAD_BYTES",
    "MAX_TOKEN_BYTES",
    "PING_MAGIC",
    "PONG_MAGIC",
    "SECRET_HEX",
    "SESSION_ID_HEX",
    "WORKER_ID_PATTERN",
    "AckStatus",
    "AuthMode",
    "ClientMessage",
    "CloseCode",
    "ConnectRequest",
    "EchoRequest",
    "EchoResponse",
    "ErrorCode",
    "ErrorMessage",
    "GetMyDetails",
    "MappingBehaviour",
    "MyDetailsResponse",
    "PathKind",
    "PeerDatagram",
    "PeerIntroduction",
    "PeerKind",
    "PeerRole",
    "ProtocolError",
    "PunchResult",
    "PunchStatus",
    "RegisterPublicIp",
    "RelayDatagram",
    "ReplayWindow",
    "ServerMessage",
    "UdpEndpointAck",
    "UpdateUdpEndpoint",
    "decode_client_message",
    "decode_server_message",
    "encode_message",
    "encode_ping",
    "iso_timestamp",
    "open_peer_datagram",
    "parse_ip_literal",
    "peek_session_id",
    "pong_for",
    "pong_token",
    "seal_peer_datagram",
    "validate_port",
    "validate_worker_id",
]
