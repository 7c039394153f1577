"""STUN Binding from inside a lab namespace, with the project's STUN codec (aioice.stun,
which the worker and the dev STUN server use too)."""

from __future__ import annotations

import struct

from aioice import stun

from holepunch_devtools.natlab.sockets import netns_socket, udp_exchange

__all__ = ["binding_request", "mapped_address", "stun_binding"]


def binding_request() -> tuple[bytes, bytes]:
    """An RFC 5389 Binding request and its transaction id."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    return bytes(request), request.transaction_id


def mapped_address(response: bytes, transaction_id: bytes) -> tuple[str, int] | None:
    """The XOR-MAPPED-ADDRESS of the Binding success response to `transaction_id`, else None."""
    if int.from_bytes(response[4:8], "big") != stun.COOKIE:
        return None
    try:
        message = stun.parse_message(response)
    except (ValueError, struct.error):
        return None
    if (
        message.transaction_id != transaction_id
        or message.message_method != stun.Method.BINDING
        or message.message_class != stun.Class.RESPONSE
    ):
        return None
    address = message.attributes.get("XOR-MAPPED-ADDRESS")
    if address is None:
        return None
    ip, port = address
    return str(ip), int(port)


def stun_binding(
    namespace: str, source_ip: str, server: tuple[str, int], attempts: int = 1
) -> tuple[str, int] | None:
    """The mapped address `server` reports for a fresh socket on `source_ip` in `namespace`."""
    with netns_socket(namespace) as sock:
        sock.bind((source_ip, 0))
        request, transaction_id = binding_request()

        def answers(data: bytes) -> bool:
            return mapped_address(data, transaction_id) is not None

        response = udp_exchange(sock, server, request, answers, attempts=attempts, wait_sec=0.2)
    return None if response is None else mapped_address(response, transaction_id)
