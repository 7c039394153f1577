"""The worker's UDP socket and STUN client against real STUN servers (coturn and the dev
server), a lossy relay, a silent server, spoofed answers, garbage and pings."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aioice import stun
from holepunch_devtools.stun_server import start_stun_server
from holepunch_protocol import MappingBehaviour, encode_ping, pong_token
from holepunch_worker.config import StunServerAddress
from holepunch_worker.stun_client import (
    StunError,
    binding_request,
    discover_mapping,
    resolve_server,
)
from holepunch_worker.udp import WorkerDatagramProtocol, open_worker_socket

from tests.support.coturn import coturn_server  # noqa: F401 - fixture
from tests.support.stun_servers import LossyForwarder, SilentUdpSocket

Address = tuple[str, int]
LOGGER = logging.getLogger("tests.stun")


@pytest_asyncio.fixture
async def worker_socket() -> AsyncIterator[WorkerDatagramProtocol]:
    protocol = await open_worker_socket("127.0.0.1", 0, LOGGER, "test-worker")
    try:
        yield protocol
    finally:
        protocol.close()
        await protocol.closed


@pytest_asyncio.fixture(params=["dev-stun", "coturn"])
async def stun_addresses(request: pytest.FixtureRequest) -> AsyncIterator[list[Address]]:
    """Two addresses (127.0.0.1 and 127.0.0.2) of one real STUN server."""
    if request.param == "coturn":
        yield request.getfixturevalue("coturn_server").addresses
        return
    handle = await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)])
    try:
        yield handle.addresses
    finally:
        handle.close()


def as_servers(addresses: list[Address]) -> list[StunServerAddress]:
    return [StunServerAddress(host, port) for host, port in addresses]


class Peer:
    """A plain UDP socket standing for a remote peer (blocking calls run in a thread)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)

    async def ping(self, worker: Address, token: bytes) -> bytes | None:
        self.sock.sendto(encode_ping(token), worker)
        data, source = await asyncio.to_thread(self.sock.recvfrom, 2048)
        assert source == worker
        return pong_token(data)

    def close(self) -> None:
        self.sock.close()


async def test_mapped_address_is_the_worker_socket_and_mapping_is_endpoint_independent(
    worker_socket: WorkerDatagramProtocol, stun_addresses: list[Address]
) -> None:
    round_ = await discover_mapping(
        worker_socket, as_servers(stun_addresses), 1, LOGGER, "test-worker"
    )
    assert round_.failures == ()
    assert [result.answer.mapped for result in round_.results] == [worker_socket.local_address] * 2
    assert {result.answer.server for result in round_.results} == set(stun_addresses)
    assert round_.mapping is MappingBehaviour.ENDPOINT_INDEPENDENT
    assert round_.mapped == worker_socket.local_address
    assert all(result.rtt_ms < 500 for result in round_.results)  # no retransmission needed
    assert worker_socket.counters.stun_responses == 2


async def test_one_server_gives_unknown_mapping(
    worker_socket: WorkerDatagramProtocol, stun_addresses: list[Address]
) -> None:
    round_ = await discover_mapping(
        worker_socket, as_servers(stun_addresses[:1]), 1, LOGGER, "test-worker"
    )
    assert round_.mapping is MappingBehaviour.UNKNOWN
    assert round_.mapped == worker_socket.local_address


async def test_retransmits_when_the_first_request_is_lost(
    worker_socket: WorkerDatagramProtocol, stun_addresses: list[Address]
) -> None:
    relay = LossyForwarder(target=stun_addresses[0], drop_first=1)
    relay_address = await relay.start()
    try:
        mapped, rtt_ms = await binding_request(worker_socket, relay_address, retransmissions=2)
    finally:
        relay.close()
    assert relay.received == 2  # the dropped request, then aioice's retransmission
    assert rtt_ms >= 500  # the retransmission waited out the initial RTO (0.5 s)
    # The server saw the relay, not the worker: the answer is the relay's mapping.
    assert mapped[0] == "127.0.0.1" and mapped != worker_socket.local_address


async def test_times_out_when_nothing_answers_and_ignores_answers_from_elsewhere(
    worker_socket: WorkerDatagramProtocol,
) -> None:
    silent = SilentUdpSocket()
    silent_address = await silent.start()
    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoofer.bind(("127.0.0.1", 0))
    try:
        request = asyncio.create_task(
            binding_request(worker_socket, silent_address, retransmissions=1)
        )
        await asyncio.wait_for(silent.arrived.wait(), 5)
        # A well-formed answer to the pending transaction, from the wrong address.
        forged = stun.Message(
            stun.Method.BINDING,
            stun.Class.RESPONSE,
            transaction_id=stun.parse_message(silent.datagrams[0]).transaction_id,
        )
        forged.attributes["XOR-MAPPED-ADDRESS"] = ("198.51.100.66", 6666)
        spoofer.sendto(bytes(forged), worker_socket.local_address)
        with pytest.raises(StunError, match="no response after 2 transmissions"):
            await request
    finally:
        spoofer.close()
        silent.close()
    assert len(silent.datagrams) == 2  # one retransmission, as configured
    assert worker_socket.counters.dropped_unexpected_stun == 1
    assert worker_socket.counters.stun_responses == 0


async def test_a_malformed_answer_to_a_pending_request_is_dropped_and_the_real_one_accepted(
    worker_socket: WorkerDatagramProtocol,
) -> None:
    server = SilentUdpSocket()
    server_address = await server.start()
    try:
        request = asyncio.create_task(
            binding_request(worker_socket, server_address, retransmissions=3)
        )
        await asyncio.wait_for(server.arrived.wait(), 5)
        transaction_id = stun.parse_message(server.datagrams[0]).transaction_id
        # A binding response whose FINGERPRINT is 2 bytes long: aioice raises struct.error.
        broken = (
            struct.pack("!HHI", 0x0101, 8, stun.COOKIE)
            + transaction_id
            + struct.pack("!HH", 0x8028, 2)
            + b"\x00" * 4
        )
        server.send(broken, worker_socket.local_address)
        answer = stun.Message(
            stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=transaction_id
        )
        answer.attributes["XOR-MAPPED-ADDRESS"] = ("198.51.100.7", 7000)
        server.send(bytes(answer), worker_socket.local_address)
        mapped, _ = await asyncio.wait_for(request, 5)
    finally:
        server.close()
    assert mapped == ("198.51.100.7", 7000)
    assert worker_socket.counters.dropped_malformed_stun == 1
    assert worker_socket.counters.stun_responses == 1


async def test_a_dead_server_fails_alone_and_the_round_still_reports(
    worker_socket: WorkerDatagramProtocol, stun_addresses: list[Address]
) -> None:
    silent = SilentUdpSocket()
    silent_address = await silent.start()
    try:
        servers = as_servers([stun_addresses[0], silent_address])
        round_ = await discover_mapping(worker_socket, servers, 0, LOGGER, "test-worker")
    finally:
        silent.close()
    assert [server for server, _ in round_.failures] == [servers[1]]
    assert round_.mapped == worker_socket.local_address
    assert round_.mapping is MappingBehaviour.UNKNOWN


async def test_unresolvable_server_is_a_failure_not_a_crash(
    worker_socket: WorkerDatagramProtocol,
) -> None:
    # An IPv6 literal has no IPv4 address for the worker's IPv4 socket; unlike a bogus
    # name, it fails without asking DNS, which may be unreachable here.
    servers = [StunServerAddress("::1", 3478)]
    round_ = await discover_mapping(worker_socket, servers, 0, LOGGER, "test-worker")
    assert round_.results == () and round_.mapped is None
    assert "cannot resolve ::1" in round_.failures[0][1]


async def test_garbage_is_dropped_and_counted_and_stun_still_works(
    worker_socket: WorkerDatagramProtocol, stun_addresses: list[Address]
) -> None:
    peer = Peer()
    stray_response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)
    stray_response.attributes["XOR-MAPPED-ADDRESS"] = ("198.51.100.1", 1)
    stray_request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    broken_stun = bytes(stray_response)[:20] + b"\x00\x20\x00\x08" + b"\xff" * 4
    broken_stun = broken_stun[:2] + (len(broken_stun) - 20).to_bytes(2, "big") + broken_stun[4:]
    garbage = [
        b"",
        b"\x00",
        os.urandom(1200),
        b"GET / HTTP/1.1\r\n\r\n",
        broken_stun,  # STUN header, truncated attribute
        bytes(stray_response),  # no such transaction
        bytes(stray_request),  # the worker is no STUN server
    ]
    try:
        for datagram in garbage:
            peer.sock.sendto(datagram, worker_socket.local_address)
        # Loopback keeps order and the protocol handles datagrams one by one: once the
        # pong is back, every datagram above has been handled.
        assert await peer.ping(worker_socket.local_address, b"after-garbage") == b"after-garbage"
    finally:
        peer.close()
    counters = worker_socket.counters
    assert counters.dropped_other == 4
    # None of the STUN-shaped ones answers a transaction of ours, so none is even parsed.
    assert counters.dropped_malformed_stun == 0
    assert counters.dropped_unexpected_stun == 3
    assert counters.dropped == 7

    round_ = await discover_mapping(
        worker_socket, as_servers(stun_addresses), 1, LOGGER, "test-worker"
    )
    assert round_.mapped == worker_socket.local_address
    assert round_.mapping is MappingBehaviour.ENDPOINT_INDEPENDENT


async def test_ping_gets_a_pong_with_the_same_token(
    worker_socket: WorkerDatagramProtocol,
) -> None:
    peer = Peer()
    try:
        assert await peer.ping(worker_socket.local_address, b"abc123") == b"abc123"
        assert await peer.ping(worker_socket.local_address, b"") == b""
    finally:
        peer.close()
    assert worker_socket.counters.pings_answered == 2
    assert worker_socket.counters.dropped == 0


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example"])
async def test_a_name_that_cannot_be_encoded_is_a_resolution_failure(host: str) -> None:
    with pytest.raises(StunError, match="cannot resolve"):
        await resolve_server(StunServerAddress(host, 3478))
