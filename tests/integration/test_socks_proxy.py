"""The SOCKS5 proxy and the forwards on real sockets, over a loopback data plane.

Real clients (curl, python-socks, plain sockets) talk to the real proxy and forwards;
the data plane underneath is tests/support/loopback_data_plane.py, which reaches a
"peer's" port by connecting to it on 127.0.0.1. The NAT-lab tests run the same scenarios
with real workers and QUIC.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from holepunch_logging import WorkerEvent
from holepunch_worker.config import ForwardSpec, load_config
from holepunch_worker.dataplane.forwards import TcpForward
from holepunch_worker.dataplane.interface import ConnectRefused, DatagramChannel, IncomingStream
from holepunch_worker.dataplane.proxies import start_proxies
from holepunch_worker.dataplane.socks_server import SocksServer
from holepunch_worker.dataplane.udp_forward import UdpForwarding, UdpForwardLimits
from python_socks import ProxyError
from python_socks.async_.asyncio import Proxy

from tests.support.loopback_data_plane import LoopbackDataPlane, LoopbackNetwork
from tests.support.ports import free_tcp_port, free_udp_port

GREETING = bytes([5, 1, 0])
DEADLINE = 10.0


class Recorder(logging.Handler):
    """The structured fields of every line logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []
        self._logged = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(getattr(record, "json_fields", {}))
        self._logged.set()

    async def wait_for(self, event: WorkerEvent) -> None:
        while not self.events(event):
            self._logged.clear()
            await self._logged.wait()

    def events(self, event: WorkerEvent) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def logger(recorder: Recorder, request: pytest.FixtureRequest) -> logging.Logger:
    log = logging.getLogger(f"tests.socks.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(recorder)
    return log


@pytest.fixture
def network() -> LoopbackNetwork:
    network = LoopbackNetwork()
    network.add("worker-a")
    network.add("worker-b")
    return network


@pytest.fixture
def plane(network: LoopbackNetwork) -> LoopbackDataPlane:
    return network.planes["worker-a"]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def echo_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads to the client's half-close, then answers with the SHA-256 of it all and the
    byte count: the answer can come only if the FIN crossed the proxy."""
    digest = hashlib.sha256()
    count = 0
    try:
        while data := await reader.read(65536):
            digest.update(data)
            count += len(data)
    except ConnectionResetError:
        writer.close()  # the relay was reset: nothing to answer
        return
    writer.write(f"{digest.hexdigest()} {count}".encode())
    await writer.drain()
    writer.close()


async def http_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    body = b"hello from worker-b\n"
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def socks_proxy(
    plane: LoopbackDataPlane, logger: logging.Logger, **options: float
) -> AsyncIterator[int]:
    server = SocksServer(plane, "worker-a", logger, **options)  # type: ignore[arg-type]
    _host, port = await server.start("127.0.0.1", 0)
    try:
        yield port
    finally:
        await server.close()


def domain_request(host: bytes, port: int, command: int = 1) -> bytes:
    return bytes([5, command, 0, 3, len(host)]) + host + port.to_bytes(2, "big")


async def raw_exchange(proxy_port: int, data: bytes) -> bytes:
    """Send `data`, read until the proxy closes: everything it answered (the deadline
    fails the test if the proxy keeps the connection open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(DEADLINE):
            return await reader.read()
    finally:
        writer.close()


def reply(code: int) -> bytes:
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


# ---------------------------------------------------------------------- real clients


async def test_curl_reaches_a_peers_http_server_through_the_proxy(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    async with tcp_server(http_hello) as http_port, socks_proxy(plane, logger) as proxy_port:
        curl = await asyncio.create_subprocess_exec(
            "curl", "--silent", "--show-error", "--max-time", "10",
            "--socks5-hostname", f"127.0.0.1:{proxy_port}",
            f"http://worker-b.holepunch:{http_port}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await curl.communicate()
    assert (curl.returncode, stderr) == (0, b"")
    assert stdout == b"hello from worker-b\n"
    assert plane.connect_calls == ["worker-b"]


async def test_curl_is_told_an_unknown_peer_is_unreachable(
    plane: LoopbackDataPlane, logger: logging.Logger, recorder: Recorder
) -> None:
    async with socks_proxy(plane, logger) as proxy_port:
        curl = await asyncio.create_subprocess_exec(
            "curl", "--silent", "--show-error", "--max-time", "10",
            "--socks5-hostname", f"127.0.0.1:{proxy_port}", "http://worker-zz.holepunch:80/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await curl.communicate()
    assert curl.returncode == 97  # CURLE_PROXY: the proxy answered with an error
    assert b"Host unreachable" in stderr or b"(4)" in stderr, stderr
    [line] = recorder.events(WorkerEvent.PROXY_REFUSED)
    assert (line["reason"], line["reply"], line["peer_id"]) == ("peer_not_found", 4, "worker-zz")


async def test_a_python_client_streams_both_ways_with_a_half_close(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    async with tcp_server(echo_after_eof) as echo_port, socks_proxy(plane, logger) as proxy_port:
        proxy = Proxy.from_url(f"socks5://127.0.0.1:{proxy_port}", rdns=True)
        sock = await proxy.connect("worker-b.holepunch", echo_port, timeout=DEADLINE)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(DEADLINE):
            answer = await reader.read()
        writer.close()
    assert answer == f"{hashlib.sha256(payload).hexdigest()} {len(payload)}".encode()


# A proxy that read without waiting for the far side would take all of this.
BACKPRESSURE_LIMIT = 64 * 1024 * 1024
# How long a blocked client must stay blocked to count as held back by the proxy.
STALL_WINDOW_SEC = 0.5


async def writable_within(sock: socket.socket, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(sock, wake)
    try:
        await asyncio.wait_for(ready, seconds)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_writer(sock)


async def send_until_held_back(sock: socket.socket) -> tuple[hashlib._Hash, int]:
    """Send random bytes until the socket stays blocked for the stall window (or the
    limit is reached): their digest and count."""
    chunk = os.urandom(256 * 1024)
    sock.setblocking(False)
    digest, sent = hashlib.sha256(), 0
    while sent < BACKPRESSURE_LIMIT:  # each pass sends, or waits at most the window
        try:
            count = sock.send(chunk)
        except BlockingIOError:
            # Blocked: the proxy either catches up (writable again) or holds us back.
            if not await writable_within(sock, STALL_WINDOW_SEC):
                break
            continue
        digest.update(chunk[:count])
        sent += count
    return digest, sent


async def test_a_receiver_that_does_not_read_holds_the_sender_back(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    release = asyncio.Event()
    received = asyncio.get_running_loop().create_future()

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        digest, count = hashlib.sha256(), 0
        while data := await reader.read(65536):
            digest.update(data)
            count += len(data)
        received.set_result((digest.hexdigest(), count))
        writer.close()

    async with tcp_server(slow_reader) as port, socks_proxy(plane, logger) as proxy_port:
        proxy = Proxy.from_url(f"socks5://127.0.0.1:{proxy_port}", rdns=True)
        sock = await proxy.connect("worker-b.holepunch", port, timeout=DEADLINE)
        digest, sent = await send_until_held_back(sock)
        release.set()
        assert sent < BACKPRESSURE_LIMIT, "the proxy kept reading from a stalled stream"
        sock.setblocking(True)
        await asyncio.get_running_loop().run_in_executor(None, sock.shutdown, socket.SHUT_WR)
        async with asyncio.timeout(DEADLINE):
            assert await received == (digest.hexdigest(), sent)
        sock.close()


async def test_early_data_sent_with_the_request_arrives_first(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    async with tcp_server(echo_after_eof) as echo_port, socks_proxy(plane, logger) as proxy_port:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(GREETING + domain_request(b"worker-b.holepunch", echo_port) + b"early ")
        writer.write(b"late")
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(DEADLINE):
            answer = await reader.read()
        writer.close()
    expected = hashlib.sha256(b"early late").hexdigest()
    assert answer == bytes([5, 0]) + reply(0) + f"{expected} 10".encode()


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (domain_request(b"worker-zz.holepunch", 80), 4, "peer_not_found"),
        (domain_request(b"example.com", 80), 2, "not_a_peer"),
        (bytes([5, 1, 0, 1, 127, 0, 0, 1, 0, 80]), 2, "not_a_peer"),
        (domain_request(b"-x.holepunch", 80), 4, "invalid_peer_id"),
        (domain_request(b"worker-a.holepunch", 80), 2, "self"),
        (domain_request(b"worker-b.holepunch", 80, command=2), 7, "command_not_supported"),
        (domain_request(b"worker-b.holepunch", 80, command=3), 7, "command_not_supported"),
        (bytes([5, 1, 0, 9, 0, 0]), 8, "address_type_not_supported"),
    ],
)
async def test_refusals_have_their_reply_code_and_are_logged(
    plane: LoopbackDataPlane,
    logger: logging.Logger,
    recorder: Recorder,
    request_: bytes,
    code: int,
    reason: str,
) -> None:
    async with socks_proxy(plane, logger) as proxy_port:
        answer = await raw_exchange(proxy_port, GREETING + request_)
    assert answer == bytes([5, 0]) + reply(code)
    [line] = recorder.events(WorkerEvent.PROXY_REFUSED)
    assert (line["reason"], line["kind"]) == (reason, "socks")


async def test_a_port_nothing_listens_on_is_connection_refused(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    async with socks_proxy(plane, logger) as proxy_port:
        closed_port = free_tcp_port()
        answer = await raw_exchange(
            proxy_port, GREETING + domain_request(b"worker-b.holepunch", closed_port)
        )
    assert answer == bytes([5, 0]) + reply(5)


async def test_a_port_the_peer_does_not_expose_is_not_allowed(
    network: LoopbackNetwork, logger: logging.Logger, recorder: Recorder
) -> None:
    network.add("worker-c", exposed_ports=frozenset({8000}))
    async with socks_proxy(network.planes["worker-a"], logger) as proxy_port:
        answer = await raw_exchange(
            proxy_port, GREETING + domain_request(b"worker-c.holepunch", 9000)
        )
    assert answer == bytes([5, 0]) + reply(2)
    assert recorder.events(WorkerEvent.PROXY_REFUSED)[0]["reason"] == "port_not_exposed"


async def test_a_peer_the_policy_forbids_is_not_allowed(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    plane.refuse_connect("worker-b", ConnectRefused("not_allowed", "policy"))
    async with socks_proxy(plane, logger) as proxy_port:
        answer = await raw_exchange(
            proxy_port, GREETING + domain_request(b"worker-b.holepunch", 80)
        )
    assert answer == bytes([5, 0]) + reply(2)


async def test_a_connect_that_times_out_is_ttl_expired(
    plane: LoopbackDataPlane, logger: logging.Logger, recorder: Recorder
) -> None:
    plane.hold_connect("worker-b")  # never released
    async with socks_proxy(plane, logger, connect_timeout=0.2) as proxy_port:
        answer = await raw_exchange(
            proxy_port, GREETING + domain_request(b"worker-b.holepunch", 80)
        )
    assert answer == bytes([5, 0]) + reply(6)
    assert recorder.events(WorkerEvent.PROXY_REFUSED)[0]["reason"] == "timeout"


async def test_python_socks_sees_the_refusal_code(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    async with socks_proxy(plane, logger) as proxy_port:
        proxy = Proxy.from_url(f"socks5://127.0.0.1:{proxy_port}", rdns=True)
        with pytest.raises(ProxyError) as raised:
            await proxy.connect("worker-zz.holepunch", 80, timeout=DEADLINE)
    assert raised.value.error_code == 4


@pytest.mark.parametrize(
    ("data", "answer"),
    [
        (bytes([5, 1, 2]), bytes([5, 0xFF])),  # only username/password offered
        (bytes([4, 1, 0, 80, 127, 0, 0, 1, 0]), bytes([0, 91, 0, 0, 0, 0, 0, 0])),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""),
    ],
)
async def test_a_malformed_client_gets_its_answer_and_is_closed(
    plane: LoopbackDataPlane, logger: logging.Logger, data: bytes, answer: bytes
) -> None:
    async with socks_proxy(plane, logger) as proxy_port:
        got = await raw_exchange(proxy_port, data)
    assert got == answer


async def test_a_stalled_handshake_is_closed_and_others_are_served_meanwhile(
    plane: LoopbackDataPlane, logger: logging.Logger, recorder: Recorder
) -> None:
    async with (
        tcp_server(echo_after_eof) as echo_port,
        socks_proxy(plane, logger, handshake_timeout=0.5) as proxy_port,
    ):
        stalled_reader, stalled_writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        stalled_writer.write(GREETING + bytes([5, 1]))  # half a request, then nothing
        garbage_reader, garbage_writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        garbage_writer.write(b"\x05\x01\x00\x05\x01\x00\x07")  # unknown address type
        # A good client is served while the stalled one waits.
        proxy = Proxy.from_url(f"socks5://127.0.0.1:{proxy_port}", rdns=True)
        sock = await proxy.connect("worker-b.holepunch", echo_port, timeout=DEADLINE)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"ping")
        writer.write_eof()
        async with asyncio.timeout(DEADLINE):
            assert (await reader.read()).endswith(b" 4")
            assert await garbage_reader.read() == bytes([5, 0]) + reply(8)
            assert await stalled_reader.read() == bytes([5, 0])  # then closed
        for w in (writer, stalled_writer, garbage_writer):
            w.close()
    reasons = [line["reason"] for line in recorder.events(WorkerEvent.PROXY_REFUSED)]
    assert sorted(reasons) == ["address_type_not_supported", "handshake_timeout"]


async def test_closing_the_proxy_resets_a_relay_whose_receiver_does_not_read(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    stop_holding = asyncio.Event()

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stop_holding.wait()
        writer.close()

    async with tcp_server(never_reads) as port:
        server = SocksServer(plane, "worker-a", logger)
        _, proxy_port = await server.start("127.0.0.1", 0)
        proxy = Proxy.from_url(f"socks5://127.0.0.1:{proxy_port}", rdns=True)
        sock = await proxy.connect("worker-b.holepunch", port, timeout=DEADLINE)
        _, sent = await send_until_held_back(sock)
        try:
            async with asyncio.timeout(DEADLINE):
                await server.close()  # must not wait for the buffered bytes to be read
                reader, writer = await asyncio.open_connection(sock=sock)
                with pytest.raises(ConnectionResetError):
                    await reader.read()
            writer.close()
        finally:
            stop_holding.set()
    assert 0 < sent < BACKPRESSURE_LIMIT


async def test_clients_over_the_cap_are_reset_on_arrival(
    plane: LoopbackDataPlane, logger: logging.Logger, recorder: Recorder
) -> None:
    async with socks_proxy(plane, logger, max_clients=1) as proxy_port:
        first_reader, first_writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        first_writer.write(GREETING)
        async with asyncio.timeout(DEADLINE):
            assert await first_reader.readexactly(2) == bytes([5, 0])  # being served
            second_reader, second_writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            with pytest.raises(ConnectionResetError):
                await second_reader.read()
        first_writer.close()
        second_writer.close()
    [line] = recorder.events(WorkerEvent.PROXY_REFUSED)
    assert line["reason"] == "too_many_clients"


async def test_a_port_the_peer_serves_in_process_is_reached_too(
    network: LoopbackNetwork, logger: logging.Logger
) -> None:
    seen: list[tuple[str, int]] = []

    async def greet(stream: IncomingStream) -> None:
        seen.append((stream.peer_id, stream.port))
        stream.writer.write(b"served by worker-b")
        await stream.writer.drain()
        stream.writer.close()

    network.planes["worker-b"].serve_port(7000, greet)
    async with socks_proxy(network.planes["worker-a"], logger) as proxy_port:
        proxy = Proxy.from_url(f"socks5://127.0.0.1:{proxy_port}", rdns=True)
        sock = await proxy.connect("worker-b.holepunch", 7000, timeout=DEADLINE)
        reader, writer = await asyncio.open_connection(sock=sock)
        async with asyncio.timeout(DEADLINE):
            assert await reader.read() == b"served by worker-b"
        writer.close()
    assert seen == [("worker-a", 7000)]


async def test_closing_the_proxy_resets_open_relays_and_stops_listening(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    async with tcp_server(echo_after_eof) as echo_port:
        server = SocksServer(plane, "worker-a", logger)
        _, proxy_port = await server.start("127.0.0.1", 0)
        proxy = Proxy.from_url(f"socks5://127.0.0.1:{proxy_port}", rdns=True)
        sock = await proxy.connect("worker-b.holepunch", echo_port, timeout=DEADLINE)
        reader, writer = await asyncio.open_connection(sock=sock)
        async with asyncio.timeout(DEADLINE):
            await server.close()
            with pytest.raises(ConnectionResetError):
                await reader.read()
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", proxy_port)


# ---------------------------------------------------------------------- TCP forwards


async def test_a_tcp_forward_carries_a_plain_client_to_the_peer(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    async with tcp_server(echo_after_eof) as echo_port:
        forward = TcpForward(
            plane, ForwardSpec("127.0.0.1", 1, "worker-b", echo_port), "worker-a", logger
        )
        _, port = await forward.start(port=0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"through the forward")
            writer.write_eof()
            async with asyncio.timeout(DEADLINE):
                answer = await reader.read()
            writer.close()
        finally:
            await forward.close()
    assert answer == f"{hashlib.sha256(b'through the forward').hexdigest()} 19".encode()


async def test_a_tcp_forward_to_an_unknown_peer_resets_the_client(
    plane: LoopbackDataPlane, logger: logging.Logger, recorder: Recorder
) -> None:
    forward = TcpForward(plane, ForwardSpec("127.0.0.1", 1, "worker-zz", 80), "worker-a", logger)
    _, port = await forward.start(port=0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(ConnectionResetError):
                await reader.read()
        writer.close()
    finally:
        await forward.close()
    [line] = recorder.events(WorkerEvent.PROXY_REFUSED)
    assert (line["kind"], line["reason"], line["peer_id"]) == (
        "tcp_forward",
        "peer_not_found",
        "worker-zz",
    )


# ---------------------------------------------------------------------- UDP forwards


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(b"echo:" + data, addr)


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(data)


@contextlib.asynccontextmanager
async def udp_forward_pair(
    network: LoopbackNetwork, logger: logging.Logger, exposed: frozenset[int], peer_port: int
) -> AsyncIterator[tuple[int, UdpForwarding, UdpForwarding]]:
    """worker-a forwards a loopback UDP port to `peer_port` on worker-b, which exposes
    `exposed`: the local port, and both ends."""
    a, b = network.planes["worker-a"], network.planes["worker-b"]
    forwarding = UdpForwarding(a, "worker-a", logger, limits=UdpForwardLimits(log_interval=0.0))
    exposing = UdpForwarding(b, "worker-b", logger, exposed_ports=exposed)
    a.on_datagram(DatagramChannel.UDP_FORWARD, forwarding.datagram_received)
    b.on_datagram(DatagramChannel.UDP_FORWARD, exposing.datagram_received)
    try:
        _, port = await forwarding.add_forward(
            ForwardSpec("127.0.0.1", 1, "worker-b", peer_port), port=0
        )
        yield port, forwarding, exposing
    finally:
        await forwarding.close()
        await exposing.close()


async def udp_client(port: int) -> tuple[asyncio.DatagramTransport, UdpClient]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        UdpClient, remote_addr=("127.0.0.1", port)
    )
    return transport, client


async def test_udp_through_a_forward_pair_comes_back_to_each_sender(
    network: LoopbackNetwork, logger: logging.Logger
) -> None:
    loop = asyncio.get_running_loop()
    echo_transport, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    echo_port = echo_transport.get_extra_info("sockname")[1]
    try:
        async with udp_forward_pair(network, logger, frozenset({echo_port}), echo_port) as (
            port,
            _forwarding,
            exposing,
        ):
            first, first_client = await udp_client(port)
            second, second_client = await udp_client(port)
            first.sendto(b"one")  # before any connection: held, then sent
            second.sendto(b"two")
            async with asyncio.timeout(DEADLINE):
                assert await first_client.received.get() == b"echo:one"
                assert await second_client.received.get() == b"echo:two"
                first.sendto(b"three")
                assert await first_client.received.get() == b"echo:three"
            assert exposing.exposed_flow_count() == 2  # one socket per sender
            first.close()
            second.close()
    finally:
        echo_transport.close()


async def test_udp_to_a_port_not_exposed_is_dropped_and_counted(
    network: LoopbackNetwork, logger: logging.Logger, recorder: Recorder
) -> None:
    target = free_udp_port()
    async with udp_forward_pair(network, logger, frozenset(), target) as (port, _, exposing):
        client, _ = await udp_client(port)
        client.sendto(b"knock")
        async with asyncio.timeout(DEADLINE):
            await recorder.wait_for(WorkerEvent.UDP_FORWARD_DROPPED)
        client.close()
        assert exposing.dropped == {"port_not_exposed": 1}
        assert exposing.exposed_flow_count() == 0
    [line] = recorder.events(WorkerEvent.UDP_FORWARD_DROPPED)
    assert (line["reason"], line["peer_id"], line["port"]) == (
        "port_not_exposed",
        "worker-a",
        target,
    )


async def test_idle_udp_flows_expire_and_a_sender_gets_a_new_flow(
    network: LoopbackNetwork, logger: logging.Logger
) -> None:
    loop = asyncio.get_running_loop()
    echo_transport, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    echo_port = echo_transport.get_extra_info("sockname")[1]
    try:
        async with udp_forward_pair(network, logger, frozenset({echo_port}), echo_port) as (
            port,
            forwarding,
            exposing,
        ):
            client, received = await udp_client(port)
            async with asyncio.timeout(DEADLINE):
                client.sendto(b"before")
                assert await received.received.get() == b"echo:before"
                later = loop.time() + UdpForwardLimits().idle_timeout
                forwarding.expire_idle(later)
                exposing.expire_idle(later)
                assert exposing.exposed_flow_count() == 0
                client.sendto(b"after")  # a new flow, a new socket on the exposing end
                assert await received.received.get() == b"echo:after"
            assert exposing.exposed_flow_count() == 1
            client.close()
    finally:
        echo_transport.close()


async def test_udp_datagrams_that_cannot_go_are_dropped_with_the_reason(
    network: LoopbackNetwork, logger: logging.Logger, recorder: Recorder
) -> None:
    async with udp_forward_pair(network, logger, frozenset({9}), 9) as (port, forwarding, _):
        client, _ = await udp_client(port)
        client.sendto(b"x" * 1500)  # over the loopback plane's 1,100-byte datagrams
        async with asyncio.timeout(DEADLINE):
            await recorder.wait_for(WorkerEvent.UDP_FORWARD_DROPPED)
        assert forwarding.dropped == {"too_large": 1}
        client.close()


async def test_udp_datagrams_for_a_peer_the_policy_forbids_are_dropped(
    network: LoopbackNetwork, logger: logging.Logger, recorder: Recorder
) -> None:
    network.planes["worker-a"].refuse_connect("worker-b", ConnectRefused("not_allowed", "policy"))
    async with udp_forward_pair(network, logger, frozenset({9}), 9) as (port, forwarding, _):
        client, _ = await udp_client(port)
        client.sendto(b"one")
        async with asyncio.timeout(DEADLINE):
            await recorder.wait_for(WorkerEvent.UDP_FORWARD_DROPPED)
        assert forwarding.dropped == {"not_allowed": 1}
        assert network.planes["worker-a"].connect_calls == ["worker-b"]
        client.close()


# ---------------------------------------------------------------------- start_proxies


async def test_start_proxies_runs_what_the_settings_ask_for(
    plane: LoopbackDataPlane, logger: logging.Logger, recorder: Recorder
) -> None:
    socks_port, forward_port, udp_port = free_tcp_port(), free_tcp_port(), free_udp_port()
    config = load_config(
        {
            "RENDEZVOUS_SERVICE_URL": "http://127.0.0.1:1",
            "WORKER_ID": "worker-a",
            "SOCKS_LISTEN": f"127.0.0.1:{socks_port}",
            "TCP_FORWARDS": f"127.0.0.1:{forward_port}=worker-b:8000",
            "UDP_FORWARDS": f"127.0.0.1:{udp_port}=worker-b:53",
            "EXPOSE_UDP_PORTS": "5353",
        }
    )
    proxies = await start_proxies(plane, config, logger)
    try:
        kinds = sorted(line["kind"] for line in recorder.events(WorkerEvent.PROXY_LISTENING))
        assert kinds == ["socks", "tcp_forward", "udp_forward"]
        answer = await raw_exchange(socks_port, GREETING + domain_request(b"x.example", 80))
        assert answer == bytes([5, 0]) + reply(2)
        probe = socket.create_connection(("127.0.0.1", forward_port), timeout=DEADLINE)
        probe.close()
    finally:
        await proxies.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", socks_port), timeout=DEADLINE)


async def test_start_proxies_closes_what_it_started_when_a_listener_cannot_bind(
    plane: LoopbackDataPlane, logger: logging.Logger
) -> None:
    socks_port = free_tcp_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    config = load_config(
        {
            "RENDEZVOUS_SERVICE_URL": "http://127.0.0.1:1",
            "WORKER_ID": "worker-a",
            "SOCKS_LISTEN": f"127.0.0.1:{socks_port}",
            "TCP_FORWARDS": f"127.0.0.1:{taken.getsockname()[1]}=worker-b:8000",
        }
    )
    try:
        with pytest.raises(OSError):
            await start_proxies(plane, config, logger)
    finally:
        taken.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", socks_port), timeout=DEADLINE)
