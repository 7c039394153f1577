"""A small RFC 5389 STUN server for local demos and tests (no root, no internet).

Answers Binding requests with XOR-MAPPED-ADDRESS and MAPPED-ADDRESS on every address it
listens on; ignores anything else. Listening on two loopback addresses (127.0.0.1 and
127.0.0.2 work on Linux without configuration) lets a worker classify its mapping as it
would against two public servers.

    holepunch-dev-stun --listen 127.0.0.1:3478 --listen 127.0.0.2:3478

In-process: `handle = await start_stun_server([("127.0.0.1", 0)])`, then
`handle.addresses` and `handle.close()`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

from aioice import stun
from holepunch_logging import DevEvent, configure_logging, log_event

__all__ = [
    "DEFAULT_LISTEN",
    "StunServerCounters",
    "StunServerHandle",
    "binding_response",
    "main",
    "parse_listen_address",
    "start_stun_server",
]

SERVICE_NAME = "holepunch-dev-stun"
SOFTWARE = "holepunch-dev-stun"
DEFAULT_LISTEN = ("127.0.0.1:3478", "127.0.0.2:3478")

Address = tuple[str, int]

_logger = logging.getLogger(SERVICE_NAME)


def binding_response(datagram: bytes, client: Address) -> bytes | None:
    """The success response to an RFC 5389 Binding request from `client`, else None."""
    if len(datagram) < stun.HEADER_LENGTH or datagram[0] & 0xC0:
        return None
    if int.from_bytes(datagram[4:8], "big") != stun.COOKIE:
        return None  # RFC 3489 request, or not STUN at all
    try:
        request = stun.parse_message(datagram)
    except ValueError:
        return None
    if request.message_method != stun.Method.BINDING or request.message_class != stun.Class.REQUEST:
        return None
    response = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
    )
    response.attributes["XOR-MAPPED-ADDRESS"] = client
    response.attributes["MAPPED-ADDRESS"] = client
    response.attributes["SOFTWARE"] = SOFTWARE
    response.add_fingerprint()
    return bytes(response)


@dataclass(slots=True)
class StunServerCounters:
    answered: int = 0
    ignored: int = 0


class _StunServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, counters: StunServerCounters) -> None:
        self._counters = counters
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector event loop's datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        client: Address = (addr[0], addr[1])
        response = binding_response(data, client)
        if response is None or self._transport is None:
            self._counters.ignored += 1
            log_event(
                _logger,
                DevEvent.STUN_DATAGRAM_IGNORED,
                "ignored a datagram that is not a Binding request",
                level=logging.DEBUG,
                peer_ip=client[0],
                peer_port=client[1],
            )
            return
        self._transport.sendto(response, client)
        self._counters.answered += 1
        log_event(
            _logger,
            DevEvent.STUN_BINDING_ANSWERED,
            f"answered a Binding request from {client[0]}:{client[1]}",
            level=logging.DEBUG,
            udp_ip=client[0],
            udp_port=client[1],
        )

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away: nothing to do


@dataclass(slots=True)
class StunServerHandle:
    """A running server: where it listens, what it did, and how to stop it."""

    addresses: list[Address]
    counters: StunServerCounters
    _transports: list[asyncio.DatagramTransport] = field(repr=False)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()

    async def __aenter__(self) -> StunServerHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


async def start_stun_server(addresses: Iterable[Address]) -> StunServerHandle:
    """Listen on every (host, port); port 0 picks a free port per address."""
    loop = asyncio.get_running_loop()
    counters = StunServerCounters()
    transports: list[asyncio.DatagramTransport] = []
    bound: list[Address] = []
    try:
        for host, port in addresses:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _StunServerProtocol(counters), local_addr=(host, port)
            )
            transports.append(transport)
            name = transport.get_extra_info("sockname")
            bound.append((name[0], name[1]))
    except BaseException:
        for transport in transports:
            transport.close()
        raise
    if not bound:
        raise ValueError("no address to listen on")
    for host, port in bound:
        log_event(
            _logger,
            DevEvent.STUN_SERVER_LISTENING,
            f"STUN server on {host}:{port}",
            udp_ip=host,
            udp_port=port,
        )
    return StunServerHandle(addresses=bound, counters=counters, _transports=transports)


def parse_listen_address(text: str) -> Address:
    """`HOST:PORT` or `[IPV6]:PORT`; raises argparse.ArgumentTypeError."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
    try:
        port = int(port_text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None
    if not host or not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return (host, port)


async def _serve(addresses: Sequence[Address]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    handle = await start_stun_server(addresses)
    try:
        await stop.wait()
    finally:
        handle.close()
        log_event(
            _logger,
            DevEvent.STUN_SERVER_STOPPED,
            "STUN server stopped",
            answered=handle.counters.answered,
            ignored=handle.counters.ignored,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=SERVICE_NAME, description="A small STUN server for local demos and tests."
    )
    parser.add_argument(
        "--listen",
        action="append",
        type=parse_listen_address,
        metavar="HOST:PORT",
        help=f"address to answer on; repeat for several (default: {' '.join(DEFAULT_LISTEN)})",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="DEBUG logs every datagram",
    )
    arguments = parser.parse_args(argv)
    configure_logging(SERVICE_NAME, arguments.log_level)
    addresses = arguments.listen or [parse_listen_address(text) for text in DEFAULT_LISTEN]
    try:
        asyncio.run(_serve(addresses))
    except OSError as error:
        log_event(
            _logger,
            DevEvent.STUN_SERVER_FAILED,
            f"cannot listen: {error}",
            level=logging.ERROR,
            reason=str(error),
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
