"""The worker's one UDP socket: STUN transactions and application datagrams, demultiplexed.

STUN requests leave from this socket, so the mapping STUN reports is the mapping peers
reach. `datagram_received` hands STUN responses to their aioice `Transaction` (only when
they come from the address the request went to), answers pings with pongs, hands peer
datagrams (magic "HPX1", punch.py) to the peer handler, and counts and drops everything
else. Nothing a peer sends can raise out of it.

asyncio's datagram transport reads one datagram per event-loop turn. After each one the
protocol reads on, up to `RECEIVE_BATCH` datagrams, from a duplicate of the socket's
descriptor (the same socket: asyncio's transport socket offers no recvfrom), so a burst
of QUIC packets is handled in one turn and what the data plane defers to the end of the
turn (its flush and acknowledgements, the streams' wake-ups and the TCP writes behind
them) happens once per batch, not per packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

from aioice import stun
from holepunch_logging import WorkerEvent, log_event
from holepunch_protocol import pong_for, pong_token
from holepunch_protocol.peer_datagrams import PEER_MAGIC

from holepunch_worker.mapping import TransportAddress

__all__ = [
    "DatagramCounters",
    "DatagramKind",
    "PeerHandler",
    "WorkerDatagramProtocol",
    "classify_datagram",
    "open_worker_socket",
]

_STUN_MAGIC_COOKIE = stun.COOKIE.to_bytes(4, "big")
UDP_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
# Datagrams handled per event-loop turn at most (the first one read by asyncio).
RECEIVE_BATCH = 64
_MAX_DATAGRAM_BYTES = 65535


class DatagramKind(enum.StrEnum):
    STUN = "stun"
    PING = "ping"
    PONG = "pong"
    PEER = "peer"  # a sealed datagram from an introduced peer (checked by its session)
    OTHER = "other"


def classify_datagram(data: bytes) -> DatagramKind:
    """Sort a datagram by its first bytes (RFC 7983 style), before any parsing.

    STUN: first two bits 00, a length field that matches, the RFC 5389 magic cookie.
    """
    if (
        len(data) >= stun.HEADER_LENGTH
        and data[0] & 0xC0 == 0
        and data[4:8] == _STUN_MAGIC_COOKIE
        and int.from_bytes(data[2:4], "big") == len(data) - stun.HEADER_LENGTH
    ):
        return DatagramKind.STUN
    if data.startswith(PEER_MAGIC):
        return DatagramKind.PEER
    if pong_for(data) is not None:
        return DatagramKind.PING
    if pong_token(data) is not None:
        return DatagramKind.PONG
    return DatagramKind.OTHER


@dataclass(slots=True)
class DatagramCounters:
    stun_responses: int = 0
    pings_answered: int = 0
    pongs_received: int = 0
    peer_datagrams: int = 0  # handed to the punch sessions (which drop the bad ones)
    dropped_malformed_stun: int = 0
    dropped_unexpected_stun: int = 0  # unknown transaction, wrong source, or a request
    dropped_other: int = 0
    socket_errors: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_malformed_stun + self.dropped_unexpected_stun + self.dropped_other

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "dropped": self.dropped}


@dataclass(frozen=True, slots=True)
class _PendingTransaction:
    transaction: stun.Transaction
    server: TransportAddress


PeerHandler = Callable[[bytes, TransportAddress], None]


class WorkerDatagramProtocol(asyncio.DatagramProtocol):
    """Implements aioice's TransactionSender: `send_stun(message, addr)`."""

    def __init__(self, logger: logging.Logger, worker_id: str) -> None:
        self.peer_handler: PeerHandler | None = None
        self._logger = logger
        self._worker_id = worker_id
        self._transport: asyncio.DatagramTransport | None = None
        self._batch_socket: socket.socket | None = None  # reads the rest of a batch
        self._transactions: dict[bytes, _PendingTransaction] = {}
        self.counters = DatagramCounters()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector event loop's datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)
        transport_socket = transport.get_extra_info("socket")
        if transport_socket is not None:
            self._batch_socket = transport_socket.dup()  # non-blocking, as the transport's

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._batch_socket is not None:
            self._batch_socket.close()
            self._batch_socket = None
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable from a dead STUN server...): never fatal.
        self.counters.socket_errors += 1
        log_event(
            self._logger,
            WorkerEvent.UDP_SOCKET_ERROR,
            f"UDP socket error: {exc}",
            level=logging.DEBUG,
            worker_id=self._worker_id,
            reason=str(exc),
        )

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._handle(data, addr)
        self._read_batch()

    def _read_batch(self) -> None:
        """Handle what else the socket holds now, up to RECEIVE_BATCH - 1 datagrams."""
        for _ in range(RECEIVE_BATCH - 1):
            batch_socket = self._batch_socket
            if batch_socket is None or self._transport is None:
                return
            try:
                data, addr = batch_socket.recvfrom(_MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self.error_received(error)
                return
            self._handle(data, addr)

    def _handle(self, data: bytes, addr: Any) -> None:
        source: TransportAddress = (addr[0], addr[1])
        kind = classify_datagram(data)
        if kind is DatagramKind.STUN:
            self._stun_received(data, source)
        elif kind is DatagramKind.PING:
            pong = pong_for(data)
            if pong is not None and self._transport is not None:
                self._transport.sendto(pong, source)
                self.counters.pings_answered += 1
                self._debug(WorkerEvent.UDP_PING_ANSWERED, "answered a ping", source)
        elif kind is DatagramKind.PEER and self.peer_handler is not None:
            self.counters.peer_datagrams += 1
            self.peer_handler(data, source)
        elif kind is DatagramKind.PONG:
            self.counters.pongs_received += 1
            self._debug(WorkerEvent.UDP_PONG_RECEIVED, "received a pong", source)
        else:
            self.counters.dropped_other += 1
            self._debug(
                WorkerEvent.UDP_DATAGRAM_DROPPED, "dropped a datagram", source, kind=kind.value
            )

    def send_datagram(self, data: bytes, addr: TransportAddress) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    # ------------------------------------------------------------------ STUN

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(bytes(message), addr)

    def begin_transaction(
        self, request: stun.Message, server: TransportAddress, retransmissions: int
    ) -> stun.Transaction:
        """Register a transaction so its response is routed to it; call `end_transaction`."""
        transaction = stun.Transaction(request, server, self, retransmissions=retransmissions)
        self._transactions[request.transaction_id] = _PendingTransaction(transaction, server)
        return transaction

    def end_transaction(self, request: stun.Message) -> None:
        self._transactions.pop(request.transaction_id, None)

    def _stun_received(self, data: bytes, source: TransportAddress) -> None:
        # Only an answer to one of our transactions, from the server it went to, is parsed
        # at all: the transaction id sits at bytes 8..20 of every STUN header.
        pending = self._transactions.get(data[8:20])
        if pending is None or pending.server != source:
            self.counters.dropped_unexpected_stun += 1
            self._debug(
                WorkerEvent.UDP_DATAGRAM_DROPPED, "dropped an unexpected STUN message", source
            )
            return
        try:
            message = stun.parse_message(data)
        except Exception:  # aioice raises ValueError, struct.error, IndexError... on garbage
            self.counters.dropped_malformed_stun += 1
            self._debug(
                WorkerEvent.UDP_DATAGRAM_DROPPED, "dropped a malformed STUN message", source
            )
            return
        if message.message_class not in (stun.Class.RESPONSE, stun.Class.ERROR):
            self.counters.dropped_unexpected_stun += 1
            self._debug(
                WorkerEvent.UDP_DATAGRAM_DROPPED, "dropped an unexpected STUN message", source
            )
            return
        self.counters.stun_responses += 1
        pending.transaction.response_received(message, source)

    # ------------------------------------------------------------------ helpers

    @property
    def local_address(self) -> TransportAddress:
        if self._transport is None:
            raise RuntimeError("the UDP socket is closed")
        name = self._transport.get_extra_info("sockname")
        return (name[0], name[1])

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _debug(
        self, event: WorkerEvent, message: str, source: TransportAddress, **fields: Any
    ) -> None:
        log_event(
            self._logger,
            event,
            message,
            level=logging.DEBUG,
            worker_id=self._worker_id,
            peer_ip=source[0],
            peer_port=source[1],
            **fields,
        )


async def open_worker_socket(
    host: str, port: int, logger: logging.Logger, worker_id: str
) -> WorkerDatagramProtocol:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: WorkerDatagramProtocol(logger, worker_id), local_addr=(host, port)
    )
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # QUIC streams arrive in bursts faster than one event-loop turn drains them: the
        # default buffer (~208 KiB) overflowed on loopback, and each loss halved QUIC's
        # congestion window. The kernel caps the request at net.core.rmem_max.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER_BYTES)
    return protocol
