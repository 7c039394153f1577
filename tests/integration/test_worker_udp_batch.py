"""The worker's UDP socket handles a burst of datagrams in one event-loop turn (udp.py),
so what the data plane defers to the end of the turn runs once per batch."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest_asyncio
from holepunch_protocol.peer_datagrams import PEER_MAGIC
from holepunch_worker.mapping import TransportAddress
from holepunch_worker.udp import RECEIVE_BATCH, WorkerDatagramProtocol, open_worker_socket


@pytest_asyncio.fixture
async def worker_socket() -> AsyncIterator[WorkerDatagramProtocol]:
    protocol = await open_worker_socket("127.0.0.1", 0, logging.getLogger("test"), "w")
    yield protocol
    protocol.close()
    await protocol.closed


def _send_burst(protocol: WorkerDatagramProtocol, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for i in range(count):
            sender.sendto(PEER_MAGIC + i.to_bytes(4, "big"), protocol.local_address)


async def _handled_in_first_turn(protocol: WorkerDatagramProtocol, count: int) -> list[int]:
    """How many datagrams had been handled when the turn of the first one ended, and the
    order they came in."""
    received: list[int] = []
    first_turn_done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def handler(data: bytes, source: TransportAddress) -> None:
        received.append(int.from_bytes(data[len(PEER_MAGIC) :], "big"))
        if len(received) == 1:
            asyncio.get_running_loop().call_soon(lambda: first_turn_done.set_result(len(received)))

    protocol.peer_handler = handler
    _send_burst(protocol, count)
    in_first_turn = await first_turn_done
    return [in_first_turn, *received[:in_first_turn]]


async def test_a_burst_is_handled_in_one_turn_in_order(
    worker_socket: WorkerDatagramProtocol,
) -> None:
    in_first_turn, *order = await _handled_in_first_turn(worker_socket, 20)
    assert in_first_turn == 20
    assert order == list(range(20))
    assert worker_socket.counters.peer_datagrams == 20


async def test_a_turn_handles_at_most_a_batch_and_the_rest_follows(
    worker_socket: WorkerDatagramProtocol,
) -> None:
    count = RECEIVE_BATCH + 10
    received: list[int] = []
    all_here = asyncio.Event()
    turns: list[int] = []

    def handler(data: bytes, source: TransportAddress) -> None:
        received.append(int.from_bytes(data[len(PEER_MAGIC) :], "big"))
        if len(received) == 1:
            asyncio.get_running_loop().call_soon(lambda: turns.append(len(received)))
        if len(received) == count:
            all_here.set()

    worker_socket.peer_handler = handler
    _send_burst(worker_socket, count)
    await all_here.wait()
    assert turns == [RECEIVE_BATCH]
    assert received == list(range(count))


async def test_the_batch_reader_closes_with_the_socket() -> None:
    protocol = await open_worker_socket("127.0.0.1", 0, logging.getLogger("test"), "w")
    batch_socket = protocol._batch_socket
    assert batch_socket is not None
    protocol.close()
    await protocol.closed
    assert batch_socket.fileno() == -1  # the duplicate descriptor is not leaked
