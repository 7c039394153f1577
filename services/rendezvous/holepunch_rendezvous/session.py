"""What the rendezvous does with one frame from one worker: pure, no I/O.

`handle_text_frame` decodes and validates the frame, applies it to the registry, and
returns the reply to send and the event to log. The WebSocket layer only moves frames
and log lines; every decision is here, testable without a socket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from holepunch_protocol import (
    AckStatus,
    EchoRequest,
    EchoResponse,
    ErrorCode,
    ErrorMessage,
    GetMyDetails,
    MyDetailsResponse,
    ProtocolError,
    RegisterPublicIp,
    ServerMessage,
    UdpEndpointAck,
    UpdateUdpEndpoint,
    decode_client_message,
)

from holepunch_rendezvous.registry import Registry

__all__ = ["Event", "Outcome", "handle_binary_frame", "handle_text_frame"]


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    message: str
    level: int = logging.INFO
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    reply: ServerMessage | None = None
    event: Event | None = None


def _rejection(worker_id: str, error: ProtocolError) -> Outcome:
    fields = {"worker_id": worker_id, "code": error.code.value, "reason": error.detail}
    if error.message_type == UpdateUdpEndpoint.TYPE:
        # Workers of the original design wait for an ack, so a rejected update gets one.
        return Outcome(
            reply=UdpEndpointAck(AckStatus.ERROR, error.detail),
            event=Event(
                "udp_endpoint_rejected",
                f"Rejected UDP endpoint update from worker {worker_id}: {error.detail}",
                logging.WARNING,
                fields,
            ),
        )
    if error.message_type is not None:
        fields["message_type"] = error.message_type
    return Outcome(
        reply=ErrorMessage.from_error(error),
        event=Event(
            "message_rejected",
            f"Rejected message from worker {worker_id}: {error.detail}",
            logging.WARNING,
            fields,
        ),
    )


def handle_binary_frame(worker_id: str) -> Outcome:
    error = ProtocolError(ErrorCode.BINARY_FRAME, "binary frames are not accepted: send JSON text")
    return _rejection(worker_id, error)


def handle_text_frame(
    registry: Registry, worker_id: str, connection_id: int, frame: str, now: float
) -> Outcome:
    try:
        message = decode_client_message(frame)
    except ProtocolError as error:
        return _rejection(worker_id, error)

    if not registry.is_current(worker_id, connection_id):
        replaced = ProtocolError(
            ErrorCode.CONNECTION_REPLACED,
            "a newer connection for this worker_id replaced this one",
            message.TYPE,
        )
        return _rejection(worker_id, replaced)

    match message:
        case UpdateUdpEndpoint():
            update = registry.update_udp_endpoint(worker_id, connection_id, message, now)
            previous = update.previous
            return Outcome(
                reply=UdpEndpointAck(AckStatus.SUCCESS),
                event=Event(
                    "udp_endpoint_updated",
                    f"Worker {worker_id} UDP endpoint is {message.udp_ip}:{message.udp_port}",
                    fields={
                        "worker_id": worker_id,
                        "udp_ip": message.udp_ip,
                        "udp_port": message.udp_port,
                        "mapping": message.mapping.value if message.mapping else None,
                        "local_port": message.local_port,
                        "changed": update.changed,
                        "previous_udp_ip": previous.ip if previous else None,
                        "previous_udp_port": previous.port if previous else None,
                    },
                ),
            )
        case RegisterPublicIp():
            registry.register_public_ip(worker_id, connection_id, message.ip)
            return Outcome(
                event=Event(
                    "public_ip_registered",
                    f"Worker {worker_id} reported public IP {message.ip}",
                    fields={"worker_id": worker_id, "public_ip": message.ip},
                )
            )
        case EchoRequest():
            return Outcome(reply=EchoResponse.for_request(message, worker_id))
        case GetMyDetails():
            record = registry.get(worker_id)
            assert record is not None  # is_current() checked it above
            endpoint = record.udp_endpoint
            return Outcome(
                reply=MyDetailsResponse(
                    worker_id=worker_id,
                    registered_ip=record.registered_ip,
                    registered_port=record.observed_port,
                    udp_ip=endpoint.ip if endpoint else None,
                    udp_port=endpoint.port if endpoint else None,
                )
            )
