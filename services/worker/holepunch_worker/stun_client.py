"""STUN binding requests from the worker's own socket, to every configured server at once.

Retransmission is aioice's `Transaction` (RFC 5389: RTO 0.5 s, doubling); the number of
retransmissions is passed in. Host names are resolved on every round, without blocking
the event loop, so a STUN server that moves is followed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from aioice import stun
from holepunch_logging import WorkerEvent, log_event
from holepunch_protocol import MappingBehaviour, ProtocolError, parse_ip_literal

from holepunch_worker.config import StunServerAddress
from holepunch_worker.mapping import StunAnswer, TransportAddress, classify_mapping
from holepunch_worker.udp import WorkerDatagramProtocol

__all__ = [
    "StunError",
    "StunResult",
    "StunRound",
    "binding_request",
    "discover_mapping",
    "resolve_server",
]


class StunError(Exception):
    """A binding request produced no usable mapped address; `str()` says why."""


@dataclass(frozen=True, slots=True)
class StunResult:
    server: StunServerAddress
    answer: StunAnswer
    rtt_ms: float


@dataclass(frozen=True, slots=True)
class StunRound:
    """Every server queried once: the answers, the failures, and what they add up to."""

    results: tuple[StunResult, ...]
    failures: tuple[tuple[StunServerAddress, str], ...]
    mapping: MappingBehaviour

    @property
    def mapped(self) -> TransportAddress | None:
        """The endpoint to report: the first configured server's answer."""
        return self.results[0].answer.mapped if self.results else None


async def resolve_server(server: StunServerAddress) -> TransportAddress:
    """An IPv4 address for the server (the worker's socket is IPv4)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            server.host, server.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
        )
    except (OSError, UnicodeError) as error:  # UnicodeError: a name IDNA cannot encode
        raise StunError(f"cannot resolve {server.host}: {error}") from None
    if not infos:
        raise StunError(f"no IPv4 address for {server.host}")
    address = infos[0][4]
    return (str(address[0]), int(address[1]))


def _mapped_address(response: stun.Message) -> TransportAddress:
    for attribute in ("XOR-MAPPED-ADDRESS", "MAPPED-ADDRESS"):
        value = response.attributes.get(attribute)
        if value is None:
            continue
        ip, port = value
        try:
            ip = parse_ip_literal(ip, attribute)
        except ProtocolError as error:
            raise StunError(f"unusable {attribute}: {error.detail}") from None
        if not 1 <= port <= 65535:
            raise StunError(f"unusable {attribute} port {port}")
        return (ip, port)
    raise StunError("response has no XOR-MAPPED-ADDRESS or MAPPED-ADDRESS")


async def binding_request(
    protocol: WorkerDatagramProtocol, server: TransportAddress, retransmissions: int
) -> tuple[TransportAddress, float]:
    """Send a Binding request from the worker's socket; return (mapped address, rtt_ms).

    The round-trip time runs from the first transmission, so it includes any
    retransmission wait.
    """
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    transaction = protocol.begin_transaction(request, server, retransmissions)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        response, _ = await transaction.run()
    except stun.TransactionTimeout:
        raise StunError(f"no response after {1 + retransmissions} transmissions") from None
    except stun.TransactionFailed as error:
        raise StunError(str(error)) from None
    finally:
        protocol.end_transaction(request)
    rtt_ms = (loop.time() - started) * 1000.0
    return _mapped_address(response), rtt_ms


async def _query(
    protocol: WorkerDatagramProtocol,
    server: StunServerAddress,
    retransmissions: int,
    logger: logging.Logger,
    worker_id: str,
) -> StunResult:
    log_event(
        logger,
        WorkerEvent.STUN_REQUEST,
        f"STUN binding request to {server}",
        worker_id=worker_id,
        server=str(server),
    )
    try:
        address = await resolve_server(server)
        mapped, rtt_ms = await binding_request(protocol, address, retransmissions)
    except StunError as error:
        log_event(
            logger,
            WorkerEvent.STUN_FAILED,
            f"STUN binding to {server} failed: {error}",
            level=logging.WARNING,
            worker_id=worker_id,
            server=str(server),
            reason=str(error),
        )
        raise
    log_event(
        logger,
        WorkerEvent.STUN_RESULT,
        f"STUN {server} sees this socket as {mapped[0]}:{mapped[1]}",
        worker_id=worker_id,
        server=str(server),
        server_ip=address[0],
        udp_ip=mapped[0],
        udp_port=mapped[1],
        rtt_ms=round(rtt_ms, 1),
    )
    return StunResult(
        server=server, answer=StunAnswer(server=address, mapped=mapped), rtt_ms=rtt_ms
    )


async def discover_mapping(
    protocol: WorkerDatagramProtocol,
    servers: Sequence[StunServerAddress],
    retransmissions: int,
    logger: logging.Logger,
    worker_id: str,
) -> StunRound:
    """Query every server concurrently and classify the mapping from the answers."""
    outcomes = await asyncio.gather(
        *(_query(protocol, server, retransmissions, logger, worker_id) for server in servers),
        return_exceptions=True,
    )
    results: list[StunResult] = []
    failures: list[tuple[StunServerAddress, str]] = []
    for server, outcome in zip(servers, outcomes, strict=True):
        if isinstance(outcome, StunResult):
            results.append(outcome)
        elif isinstance(outcome, StunError):
            failures.append((server, str(outcome)))
        else:
            raise outcome  # a bug or a cancellation: never swallowed
    mapping = classify_mapping([result.answer for result in results])
    return StunRound(results=tuple(results), failures=tuple(failures), mapping=mapping)
