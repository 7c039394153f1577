"""The Python API (holepunch_worker.api) against a real rendezvous: a node starts the real
worker in the test's event loop and returns once registered; `peers()` follows the
rendezvous's pages; an introduction answers with the rendezvous's reason; streams and
datagrams go through the data plane."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from holepunch_rendezvous.config import RendezvousConfig
from holepunch_worker import api
from holepunch_worker.dataplane.interface import (
    ConnectRefused,
    IncomingStream,
    PeerUnavailable,
)

from tests.support.fake_rendezvous import fake_rendezvous
from tests.support.ports import free_tcp_port
from tests.support.punch_workers import EventLog, stun_servers, worker_env
from tests.support.rendezvous import running_rendezvous

A, B, C = "api-a", "api-b", "api-c"


def event_logger(worker_id: str) -> tuple[logging.Logger, EventLog]:
    logger = logging.getLogger(f"tests.api.{worker_id}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    log = EventLog()
    logger.addHandler(log)
    return logger, log


@asynccontextmanager
async def nodes(
    rendezvous_url: str, *specs: tuple[str, Mapping[str, str]]
) -> AsyncIterator[list[tuple[api.Node, EventLog]]]:
    async with AsyncExitStack() as stack:
        stun = await stack.enter_async_context(stun_servers())
        started = []
        for worker_id, extra in specs:
            logger, log = event_logger(worker_id)
            env = {**worker_env(worker_id, rendezvous_url, stun), **extra}
            node = await stack.enter_async_context(api.start(env, logger=logger, ready_timeout=10))
            started.append((node, log))
        yield started


async def test_start_returns_registered_and_peers_follows_every_page() -> None:
    async with (
        running_rendezvous() as server,
        nodes(server.http_url, (A, {}), (B, {}), (C, {})) as started,
    ):
        [(a, a_log), _, _] = started
        assert a.worker_id == A
        await a_log.wait_for_event("endpoint_ack", status="success")  # already in
        assert a.worker.status()["ready"] is True
        # One worker a page (A's own page comes back empty, with a cursor): only by
        # following next_cursor to the end does the listing reach C; it never lists A.
        listed = await a.peers(page_size=1)
        assert [peer.worker_id for peer in listed] == [B, C]
        assert [p.worker_id for p in await a.peers()] == [B, C]
        with pytest.raises(ValueError, match="page_size"):
            await a.peers(page_size=0)


async def test_introduce_answers_with_the_rendezvous_reason() -> None:
    config = RendezvousConfig(
        host="127.0.0.1", port=0, debug_endpoints=True, introduction_policy="team-a"
    )
    async with (
        running_rendezvous(config) as server,
        nodes(
            server.http_url,
            (A, {"WORKER_TAGS": "team-a"}),
            (B, {"WORKER_TAGS": "team-a"}),
            (C, {}),
        ) as started,
    ):
        [(a, a_log), (b, b_log), _] = started
        with pytest.raises(ConnectRefused) as refused:
            await a.introduce("nobody-here", timeout=5)
        assert refused.value.reason == "peer_not_found"
        assert "nobody-here" in refused.value.detail
        with pytest.raises(ConnectRefused) as refused:
            await a.introduce(C, timeout=5)
        assert refused.value.reason == "not_allowed"
        with pytest.raises(ConnectRefused) as refused:
            await a.introduce(A, timeout=5)
        assert refused.value.reason == "self_introduction"
        with pytest.raises(ConnectRefused) as refused:
            await a.introduce("not a worker id", timeout=5)
        assert refused.value.reason == "invalid_peer_id"
        # Refusals change nothing: no session on either side.
        assert a.worker.status()["sessions"] == []

        await a.introduce(B, timeout=5)
        [session] = a.worker.status()["sessions"]
        assert (session["peer_id"], session["role"]) == (B, "initiator")
        requested = a_log.named("connect_requested", peer_id=B)
        assert requested[-1]["source"] == "api" and requested[-1]["request_id"] is not None
        await b_log.wait_for_event("peer_introduced", peer_id=A)
        # The peer's own introduce is answered by its introduction, too.
        await b.introduce(A, timeout=5)
        assert [s["peer_id"] for s in b.worker.status()["sessions"]] == [A]


async def test_introduce_fails_at_once_when_the_rendezvous_connection_ends() -> None:
    # The fake rendezvous is of the original design: it never echoes a request_id, so
    # its refusal answers no call (the call waits for its timeout), and a connection
    # that ends fails every call still waiting.
    logger, b_log = event_logger(B)
    async with (
        fake_rendezvous() as fake,
        stun_servers() as stun,
        api.start(worker_env(B, fake.url, stun), logger=logger) as b,
    ):
        waiting = asyncio.create_task(b.introduce("nobody", timeout=30))
        await fake.wait_until(lambda: len(fake.connect_requests) == 1, 5, "the request")
        await fake.close_connections()
        with pytest.raises(PeerUnavailable) as unavailable:
            await waiting
        assert unavailable.value.reason == "rendezvous_unavailable"
        await b_log.wait_for(
            lambda: len(b_log.named("endpoint_ack", status="success")) == 2, what="reconnected"
        )
        with pytest.raises(PeerUnavailable) as unavailable:
            await b.introduce("nobody", timeout=0.3)
        assert unavailable.value.reason == "timeout"
        assert fake.connect_requests == [(B, "nobody")] * 2


async def test_a_worker_that_cannot_register_or_start_fails_clearly() -> None:
    async with stun_servers() as stun:
        unreachable = f"http://127.0.0.1:{free_tcp_port()}"
        logger, _ = event_logger(A)
        with pytest.raises(api.NodeStartFailed, match="did not register"):
            async with api.start(
                worker_env(A, unreachable, stun), logger=logger, ready_timeout=0.3
            ):
                pytest.fail("started without a rendezvous")
        async with running_rendezvous() as server, AsyncExitStack() as stack:
            [(a, _)] = await stack.enter_async_context(nodes(server.http_url, (A, {})))
            taken = a.worker.status()["udp_local"]["port"]
            env = {**worker_env(B, server.http_url, stun), "UDP_PORT": str(taken)}
            with pytest.raises(api.NodeStartFailed, match="stopped while starting"):
                async with api.start(env, logger=event_logger(B)[0], ready_timeout=10):
                    pytest.fail("started on a taken port")


async def test_a_stream_and_datagrams_between_two_nodes() -> None:
    async with (
        running_rendezvous() as server,
        nodes(server.http_url, (A, {}), (B, {})) as started,
    ):
        [(a, _), (b, _)] = started

        async def shout(stream: IncomingStream) -> None:
            line = await stream.reader.readline()
            stream.writer.write(f"{stream.peer_id} said {line.decode().strip()}\n".upper().encode())
            await stream.writer.drain()
            stream.writer.close()

        b.serve(7000, shout)
        reader, writer = await a.open_stream(B, 7000)
        writer.write(b"hello\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 10) == f"{A} SAID HELLO\n".upper().encode()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the handler closed it
        writer.close()
        await writer.wait_closed()

        connection = await a.connect(B)
        assert connection.peer_id == B and not connection.closed
        received = asyncio.create_task(b.receive_datagram())
        a.send_datagram(B, b"ping")
        assert await asyncio.wait_for(received, 10) == (A, b"ping")
        statuses = a.worker.status()["peer_connections"]
        assert [s["peer_id"] for s in statuses] == [B]
        assert statuses[0]["bytes_sent"] > 0 and statuses[0]["datagrams_sent"] >= 1
