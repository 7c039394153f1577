"""The data plane between two real workers (in this process, real UDP sockets) through the
real rendezvous process: a stream through worker A to a TCP echo server behind worker B's
EXPOSE_PORTS, byte-exact; a port not exposed refused while the next stream is served; a
peer whose TLS key is not the introduced one refused."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from holepunch_protocol import RelayDatagram, decode_server_message
from holepunch_worker.dataplane.interface import (
    DatagramChannel,
    IncomingStream,
    PeerAuthenticationFailed,
    PeerUnavailable,
    StreamRefused,
)
from holepunch_worker.identity import WorkerKey

from tests.integration.test_worker_punch_rendezvous import rendezvous_process
from tests.support.ports import free_tcp_port
from tests.support.punch_workers import LyingStunServer, RunningWorker, running_workers

A, B = "real-a", "real-b"  # A has the smaller id: A is the QUIC client


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP server on loopback that echoes everything, then closes when the client does."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def registered_pair(
    b_env: Mapping[str, str] | None = None, *, relayed: bool = False
) -> AsyncIterator[tuple[RunningWorker, RunningWorker]]:
    """A and B (with `b_env`) on a real rendezvous process, both registered. `relayed`:
    both learn their endpoint from a STUN server that lies about the port, so the pair
    has no direct path and goes through the relay."""
    a_env: dict[str, str] = {}
    b_env = dict(b_env or {})
    async with AsyncExitStack() as stack:
        _, url = await stack.enter_async_context(rendezvous_process())
        if relayed:
            lying_stun = await stack.enter_async_context(LyingStunServer.running(shift=1000))
            a_env["STUN_SERVERS"] = b_env["STUN_SERVERS"] = lying_stun
        a, b = await stack.enter_async_context(running_workers(url, (A, a_env), (B, b_env)))
        for worker in (a, b):
            await worker.log.wait_for_event("endpoint_ack", status="success")
        yield a, b


async def round_trip(a: RunningWorker, port: int, payload: bytes) -> bytes:
    """Send `payload` on a new stream, half-close, and read until the peer's end."""
    async with asyncio.timeout(30):
        reader, writer = await a.worker.data_plane.open_stream(B, port, timeout=10)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        received = await reader.read()
        writer.close()
        return received


async def test_a_stream_reaches_an_exposed_port_byte_exact() -> None:
    async with (
        echo_server() as echo_port,
        registered_pair({"EXPOSE_PORTS": str(echo_port)}) as (a, b),
    ):
        payload = os.urandom(1_000_000)
        received = await round_trip(a, echo_port, payload)
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
        for worker in (a, b):
            await worker.log.wait_for_event("peer_link_authenticated")
        [status] = (await a.status())["peer_connections"]
        assert status["peer_id"] == B and status["authenticated"] is True
        assert status["role"] == "client" and status["path"] == "direct"
        assert status["bytes_sent"] >= len(payload) and status["bytes_received"] >= len(payload)


async def test_refused_streams_and_the_next_stream_is_served() -> None:
    dead_port = free_tcp_port()  # exposed, but nothing listens there
    async with (
        echo_server() as echo_port,
        registered_pair({"EXPOSE_PORTS": f"{echo_port},{dead_port}"}) as (a, b),
    ):
        not_exposed = echo_port + 1 if echo_port + 1 != dead_port else echo_port + 2
        for port, reason in ((not_exposed, "port_not_exposed"), (dead_port, "connect_failed")):
            with pytest.raises(StreamRefused) as refused:
                async with asyncio.timeout(20):
                    await a.worker.data_plane.open_stream(B, port, timeout=10)
            assert refused.value.reason == reason
        logged = await b.log.wait_for_event("stream_refused")
        assert logged["port"] == not_exposed and logged["peer_id"] == A
        assert await round_trip(a, echo_port, b"still served") == b"still served"


async def test_serve_port_and_datagrams_in_process() -> None:
    async with registered_pair() as (a, b):

        async def shout(stream: IncomingStream) -> None:
            data = await stream.reader.read()
            stream.writer.write(f"{stream.peer_id}:{stream.port}:".encode() + data.upper())
            stream.writer.close()

        b.worker.data_plane.serve_port(7000, shout)
        got: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        b.worker.data_plane.on_datagram(
            DatagramChannel.APPLICATION, lambda peer, data: got.put_nowait((peer, data))
        )
        assert await round_trip(a, 7000, b"hello") == f"{A}:7000:HELLO".encode()
        a.worker.data_plane.send_datagram(B, DatagramChannel.APPLICATION, b"dgram")
        assert await asyncio.wait_for(got.get(), 10) == (A, b"dgram")


async def test_a_peer_with_another_key_than_introduced_is_refused() -> None:
    async with (
        echo_server() as echo_port,
        registered_pair({"EXPOSE_PORTS": str(echo_port)}) as (a, b),
    ):
        # A is told B's key is a third one (as a lying rendezvous or a man in the middle
        # would have it): B's real certificate must not be accepted.
        third = WorkerKey.generate().public_key
        deliver = a.worker._frame_received

        def lying_introductions(frame: str | bytes) -> None:
            message = json.loads(frame)
            if message.get("type") == "peer_introduction":
                message["peer_public_key"] = third
            deliver(json.dumps(message))

        a.worker._frame_received = lying_introductions  # type: ignore[method-assign]
        with pytest.raises(PeerAuthenticationFailed) as failed:
            async with asyncio.timeout(20):
                await a.worker.data_plane.open_stream(B, echo_port, timeout=10)
        assert failed.value.reason == "key_mismatch"
        await a.log.wait_for_event("peer_link_authentication_failed")
        closed = await b.log.wait_for_event("peer_link_closed", reason="key_mismatch")
        assert closed["by_peer"] is True
        assert not a.log.named("peer_link_authenticated")


async def test_a_stream_through_the_relay() -> None:
    async with (
        echo_server() as echo_port,
        registered_pair({"EXPOSE_PORTS": str(echo_port)}, relayed=True) as (a, _),
    ):
        payload = os.urandom(100_000)  # within the relay's default budget
        assert await round_trip(a, echo_port, payload) == payload
        [status] = (await a.status())["peer_connections"]
        assert status["path"] == "relay"


async def test_the_relay_carries_only_ciphertext_and_a_replayed_packet_changes_nothing() -> None:
    """The rendezvous relays the pair's QUIC packets: what it forwards (read here as B
    receives it) never holds the application's bytes, and a relayed packet delivered twice
    (as a replaying relay or an attacker on its path would) is refused once and disturbs
    nothing."""
    async with (
        echo_server() as echo_port,
        registered_pair({"EXPOSE_PORTS": str(echo_port)}, relayed=True) as (a, b),
    ):
        relayed: list[bytes] = []
        deliver = b.worker._frame_received

        def recording(frame: str | bytes) -> None:
            message = decode_server_message(frame)
            if isinstance(message, RelayDatagram):
                relayed.append(message.data)
                if len(relayed) == 20:
                    deliver(frame)  # the same relayed packet, a second time
            deliver(frame)

        b.worker._frame_received = recording  # type: ignore[method-assign]
        marker = b"HOLEPUNCH-APPLICATION-SECRET-"
        payload = marker * (60_000 // len(marker))
        assert await round_trip(a, echo_port, payload) == payload
        assert len(relayed) > 20
        assert not any(marker[:16] in datagram for datagram in relayed)
        [session] = (await b.status())["sessions"]
        assert session["dropped"].get("replay") == 1
        assert await round_trip(a, echo_port, payload) == payload  # and it carries on


async def test_the_peer_going_away_ends_streams_with_a_clean_error() -> None:
    async with registered_pair() as (a, b):
        accepted = asyncio.Event()

        async def hold(stream: IncomingStream) -> None:
            accepted.set()
            await stream.reader.read()

        b.worker.data_plane.serve_port(7000, hold)
        async with asyncio.timeout(20):
            connection = await a.worker.data_plane.connect(B)
            reader, _ = await connection.open_stream(7000)
            await accepted.wait()
            b.stop.set()  # B shuts down: its QUIC connection closes with it
            with pytest.raises(ConnectionResetError):
                await reader.read()
            await connection.wait_closed()
        assert connection.closed
        closed = await a.log.wait_for_event("peer_link_closed")
        assert closed["by_peer"] is True and closed["reason"] == "shutdown"
        with pytest.raises(PeerUnavailable):
            connection.send_datagram(DatagramChannel.APPLICATION, b"late")


async def test_garbage_on_one_stream_and_a_stream_cap_disturb_nothing_else() -> None:
    async with registered_pair() as (a, b):
        held = asyncio.Event()

        async def hold(stream: IncomingStream) -> None:
            held.set()
            await stream.reader.read()

        async def echo(stream: IncomingStream) -> None:
            stream.writer.write(await stream.reader.read())
            stream.writer.close()

        b.worker.data_plane.serve_port(7000, hold)
        b.worker.data_plane.serve_port(7001, echo)
        async with asyncio.timeout(20):
            connection = await a.worker.data_plane.connect(B)
            assert connection.mux is not None
            _, reader, writer = connection.mux.open_stream()
            writer.write(b"GET / HTTP/1.1\r\n\r\n")  # not a stream header
            with pytest.raises(ConnectionResetError):
                await reader.read()
        logged = await b.log.wait_for_event("stream_header_invalid")
        assert "version 71" in logged["reason"]

        b.worker.data_plane.exposure.max_streams_per_peer = 1
        async with asyncio.timeout(20):
            _, holding = await connection.open_stream(7000)
            await held.wait()
            with pytest.raises(StreamRefused) as refused:
                await connection.open_stream(7001)
            assert refused.value.reason == "too_many_streams"
            holding.close()
            b.worker.data_plane.exposure.max_streams_per_peer = 256
        assert await round_trip(a, 7001, b"after") == b"after"


async def test_a_failure_inside_one_connection_ends_only_that_connection() -> None:
    async with registered_pair() as (a, b):

        async def echo(stream: IncomingStream) -> None:
            stream.writer.write(await stream.reader.read())
            stream.writer.close()

        b.worker.data_plane.serve_port(7001, echo)
        async with asyncio.timeout(20):
            connection = await a.worker.data_plane.connect(B)

            def broken(packet: bytes, now: float) -> list[object]:
                raise RuntimeError("a bug in one connection")

            connection.link.packet_received = broken  # type: ignore[assignment,method-assign]
            b.worker.data_plane.send_datagram(A, DatagramChannel.APPLICATION, b"poke")
            await connection.wait_closed()
        failed = await a.log.wait_for_event("peer_link_closed", reason="internal_error")
        assert "a bug in one connection" in failed["detail"]
        # The worker serves on: a new introduction, a new connection.
        assert await round_trip(a, 7001, b"again") == b"again"
        a.log.events[:] = [e for e in a.log.events if e is not failed]  # the expected ERROR
