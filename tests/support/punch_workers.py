"""In-process workers for the punching tests: each `Worker` runs in the test's event loop
with its own logger, whose events a test awaits (never a sleep), and its HTTP port."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from holepunch_devtools.processes import catalogued_event
from holepunch_devtools.stun_server import StunServerHandle, binding_response, start_stun_server
from holepunch_worker.config import load_config
from holepunch_worker.worker import Worker

__all__ = [
    "EventLog",
    "LyingStunServer",
    "RunningWorker",
    "UdpGate",
    "running_workers",
    "stun_servers",
    "worker_env",
]

FAST_PUNCHING = {
    "PUNCH_INTERVAL_SEC": "0.05",
    "PUNCH_DEADLINE_SEC": "1",
    "PUNCH_UPGRADE_INTERVAL_SEC": "1",
    "PUNCH_KEEPALIVE_SEC": "5",
    "PEER_ECHO_TIMEOUT_SEC": "2",
}

Event = dict[str, Any]


class EventLog(logging.Handler):
    """Every `log_event` of one worker, as a dict with `event`, `level` and the fields."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "json_fields", None)
        if not isinstance(fields, dict):
            return
        self.events.append({**fields, "level": record.levelno, "message": record.getMessage()})
        self._changed.set()  # logged from the event loop's thread: the worker is in-process

    def named(self, name: str, **fields: Any) -> list[Event]:
        catalogued_event(name)
        return [
            e
            for e in self.events
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = ""
    ) -> Any:
        async def until() -> Any:
            while True:
                self._changed.clear()
                if found := predicate():
                    return found
                await self._changed.wait()

        try:
            return await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            tail = "\n".join(f"  {e.get('event')}: {e.get('message')}" for e in self.events[-12:])
            raise AssertionError(f"no {what} within {timeout} s; last events:\n{tail}") from None

    async def wait_for_event(self, name: str, timeout: float = 10.0, **fields: Any) -> Event:
        found: list[Event] = await self.wait_for(
            lambda: self.named(name, **fields), timeout, f"event {name} {fields or ''}"
        )
        return found[0]


@dataclass
class RunningWorker:
    worker_id: str
    worker: Worker
    log: EventLog
    http_port: int
    udp_address: tuple[str, int]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def post(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.http_url + path)

    async def status(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as client:
            body: dict[str, Any] = (await client.get(self.http_url + "/status")).json()
            return body

    async def session_with(self, peer_id: str) -> dict[str, Any]:
        sessions = (await self.status())["sessions"]
        [session] = [s for s in sessions if s["peer_id"] == peer_id]
        return session


@asynccontextmanager
async def stun_servers() -> AsyncIterator[StunServerHandle]:
    handle = await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)])
    try:
        yield handle
    finally:
        handle.close()


def worker_env(worker_id: str, rendezvous_url: str, stun: StunServerHandle) -> dict[str, str]:
    """A test worker's settings: loopback only, ephemeral ports, fast retries and punching."""
    return {
        "RENDEZVOUS_SERVICE_URL": rendezvous_url,
        "WORKER_ID": worker_id,
        "PORT": "0",
        "UDP_BIND_HOST": "127.0.0.1",
        "STUN_SERVERS": ",".join(f"{h}:{p}" for h, p in stun.addresses),
        "STUN_REFRESH_SEC": "30",
        "STUN_RETRANSMISSIONS": "1",
        "RECONNECT_INITIAL_DELAY_SEC": "0.05",
        "RECONNECT_MAX_DELAY_SEC": "0.2",
        **FAST_PUNCHING,
    }


@asynccontextmanager
async def running_worker(
    worker_id: str, rendezvous_url: str, stun: StunServerHandle, env: Mapping[str, str]
) -> AsyncIterator[RunningWorker]:
    config = load_config({**worker_env(worker_id, rendezvous_url, stun), **env})
    logger = logging.getLogger(f"tests.punch.{worker_id}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    log = EventLog()
    logger.addHandler(log)
    worker = Worker(config, logger)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        http = await log.wait_for_event("http_listening")
        bound = await log.wait_for_event("udp_socket_bound")
        running = RunningWorker(
            worker_id, worker, log, http["port"], (bound["udp_ip"], bound["udp_port"]), stop, task
        )
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        logger.removeHandler(log)
        errors = [e for e in log.events if e["level"] >= logging.ERROR]
        assert not errors, errors


@asynccontextmanager
async def running_workers(
    rendezvous_url: str, *specs: tuple[str, Mapping[str, str]]
) -> AsyncIterator[list[RunningWorker]]:
    async with AsyncExitStack() as stack:
        stun = await stack.enter_async_context(stun_servers())
        workers = [
            await stack.enter_async_context(running_worker(wid, rendezvous_url, stun, env))
            for wid, env in specs
        ]
        yield workers


class LyingStunServer(asyncio.DatagramProtocol):
    """A STUN server that reports every client `shift` ports off its real port: the worker
    registers an endpoint where nothing listens (as behind a NAT whose mapping towards the
    peer differs from the one STUN saw)."""

    def __init__(self, shift: int) -> None:
        self.shift = shift
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        response = binding_response(data, (addr[0], (addr[1] + self.shift) % 65536 or 1))
        if response is not None and self._transport is not None:
            self._transport.sendto(response, addr)

    @classmethod
    @asynccontextmanager
    async def running(cls, shift: int) -> AsyncIterator[str]:
        """Two of them (127.0.0.1 and 127.0.0.2); yields the STUN_SERVERS value."""
        loop = asyncio.get_running_loop()
        transports = []
        try:
            for host in ("127.0.0.1", "127.0.0.2"):
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: cls(shift), local_addr=(host, 0)
                )
                transports.append(transport)
            yield ",".join("{}:{}".format(*t.get_extra_info("sockname")[:2]) for t in transports)
        finally:
            for transport in transports:
                transport.close()


class UdpGate(asyncio.DatagramProtocol):
    """A UDP path between two workers that a test opens and closes: what one sends to the
    gate reaches the other, from the gate's address (the same address both were given for
    each other), while `open`; closed, it drops everything (a blackhole)."""

    def __init__(self) -> None:
        self.open = False
        self.ends: tuple[tuple[str, int], tuple[str, int]] | None = None
        self.forwarded = 0
        self.dropped = 0
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.open or self.ends is None or addr not in self.ends or self._transport is None:
            self.dropped += 1
            return
        self.forwarded += 1
        self._transport.sendto(data, self.ends[1] if addr == self.ends[0] else self.ends[0])

    @property
    def address(self) -> tuple[str, int]:
        assert self._transport is not None
        name = self._transport.get_extra_info("sockname")
        return (name[0], name[1])

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @classmethod
    async def start(cls) -> UdpGate:
        _, gate = await asyncio.get_running_loop().create_datagram_endpoint(
            cls, local_addr=("127.0.0.1", 0), family=socket.AF_INET
        )
        return gate
