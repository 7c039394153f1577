"""Real worker processes behind the NAT lab's NATs, with the bench application behind them:
what `make bench-data` and tests/e2e/test_dataplane_lab.py share (needs root).

Every worker exposes `APP_PORT` (EXPOSE_PORTS), where this process serves the bench
application (`bench_app.AppServer`) on the loopback of each host namespace that has a
worker; a worker given `socks=True` runs its SOCKS proxy on `SOCKS_PORT` of its host's
loopback, which is how the bench and the tests open streams (`open_stream`): the name
`<peer>.holepunch` makes the worker introduce, punch and connect on demand.

A worker may be pinned to one core (`taskset`), so its CPU time per MB is comparable to
the one-process baseline; its CPU and RSS are read from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from holepunch_devtools.bench_app import AppServer, send_blob
from holepunch_devtools.natlab import (
    Lab,
    LabError,
    LabSpec,
    http_request_json,
    new_prefix,
    wan_ip,
)
from holepunch_devtools.natlab.streams import open_connection_in, start_server_in
from holepunch_devtools.processes import ServiceProcess, start_service
from holepunch_devtools.quic_baseline import bench_pattern
from holepunch_devtools.socks_client import socks5_connect

__all__ = [
    "APP_PORT",
    "SOCKS_PORT",
    "DataLab",
    "TransferResult",
    "WorkerPlan",
    "peer_host",
]

APP_PORT = 7000
SOCKS_PORT = 1080
FIRST_HTTP_PORT = 8080
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

# Quick enough for a lab, within what the worker's config allows.
BASE_WORKER_ENV = {
    "STUN_REFRESH_SEC": "2",
    "RECONNECT_INITIAL_DELAY_SEC": "0.2",
    "RECONNECT_MAX_DELAY_SEC": "1",
    "ENDPOINT_ACK_TIMEOUT_SEC": "3",
    "LOG_LEVEL": "INFO",
    "EXPOSE_PORTS": str(APP_PORT),
}


def peer_host(worker_id: str) -> str:
    """The SOCKS host name that means "that peer"."""
    return f"{worker_id}.holepunch"


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    worker_id: str
    host: int  # host<i>, behind nat<i>
    socks: bool = False
    core: int | None = None  # taskset -c
    env: Mapping[str, str] = field(default_factory=dict)
    module: str = "holepunch_worker"  # what `python -m` runs (a test may run a variant)


@dataclass(frozen=True, slots=True)
class TransferResult:
    size: int
    seconds: float  # first byte written to the sink's last byte, one clock
    sha256_sent: str
    sha256_received: str
    cpu_seconds: Mapping[str, float]  # per worker, over the transfer

    @property
    def intact(self) -> bool:
        return self.sha256_sent == self.sha256_received

    @property
    def mbit_per_sec(self) -> float:
        return self.size * 8 / 1e6 / self.seconds

    def cpu_per_mb(self, worker_id: str) -> float:
        return self.cpu_seconds[worker_id] / (self.size / 1e6)


@dataclass
class DataLab:
    lab: Lab
    plans: dict[str, WorkerPlan]
    workers: dict[str, ServiceProcess] = field(default_factory=dict)
    app: AppServer = field(default_factory=AppServer)
    servers: list[asyncio.Server] = field(default_factory=list)
    pattern: bytes = field(default_factory=bench_pattern)
    _http_ports: dict[str, int] = field(default_factory=dict)
    _blocked: set[tuple[int, int]] = field(default_factory=set)

    # ------------------------------------------------------------------ life

    @classmethod
    async def start(
        cls, spec: LabSpec, plans: Sequence[WorkerPlan], state_root: Path | None = None
    ) -> DataLab:
        """Bring the lab up, serve the application on every host with a worker, start the
        workers and wait until all are registered. On failure, everything is removed."""
        lab = (
            Lab.create(spec, new_prefix())
            if state_root is None
            else Lab.create(spec, new_prefix(), state_root=state_root)
        )
        data_lab = cls(lab, {plan.worker_id: plan for plan in plans})
        try:
            await asyncio.to_thread(lab.up)
            for host in sorted({plan.host for plan in plans}):
                data_lab.servers.append(
                    await start_server_in(
                        lab.ns(f"host{host}"), "127.0.0.1", APP_PORT, data_lab.app.handle
                    )
                )
            for plan in plans:
                await data_lab.start_worker(plan.worker_id)
            await data_lab.wait_registered(list(data_lab.plans))
        except BaseException:
            await data_lab.stop()
            raise
        return data_lab

    async def start_worker(self, worker_id: str) -> ServiceProcess:
        plan = self.plans[worker_id]
        port = self._http_ports.get(worker_id)
        if port is None:
            same_host = [p for p in self.plans.values() if p.host == plan.host]
            port = FIRST_HTTP_PORT + same_host.index(plan)
            self._http_ports[worker_id] = port
        env = {**BASE_WORKER_ENV, "PORT": str(port), **plan.env}
        if plan.socks:
            env["SOCKS_LISTEN"] = f"127.0.0.1:{SOCKS_PORT}"
        prefix: tuple[str, ...] = ("ip", "netns", "exec", self.lab.ns(f"host{plan.host}"))
        if plan.core is not None:
            prefix = ("taskset", "-c", str(plan.core), *prefix)
        service = await start_service(
            plan.module,
            self.lab.worker_env(WORKER_ID=worker_id, **env),
            command_prefix=prefix,
        )
        self.workers[worker_id] = service
        return service

    async def stop_worker(self, worker_id: str) -> None:
        service = self.workers.pop(worker_id, None)
        if service is not None:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await service.stop(timeout=5)

    async def stop(self) -> None:
        for worker_id in list(self.workers):
            await self.stop_worker(worker_id)
        for server in self.servers:
            server.close()
        self.servers.clear()
        await asyncio.to_thread(self.lab.down)

    async def wait_registered(self, worker_ids: Sequence[str], timeout: float = 40.0) -> None:
        """Until every one of `worker_ids` is listed with its NAT's address and mapping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with contextlib.suppress(OSError, LabError, ValueError):
                listed = await asyncio.to_thread(self.lab.list_workers)
                if all(self._registered(listed.get(w) or {}, w) for w in worker_ids):
                    return
            if loop.time() > deadline:
                raise LabError(f"workers not registered within {timeout} s: {worker_ids}")
            await asyncio.sleep(0.2)  # polling the registry, bounded by the deadline

    def _registered(self, record: Mapping[str, Any], worker_id: str) -> bool:
        host = self.plans[worker_id].host
        return bool(
            record.get("stun_reported_udp_ip") == wan_ip(host)
            and record.get("nat_mapping") == self.lab.nat(host).kind.expected_mapping
        )

    # ------------------------------------------------------------------ streams

    def namespace_of(self, worker_id: str) -> str:
        return self.lab.ns(f"host{self.plans[worker_id].host}")

    async def open_stream(
        self, source: str, peer: str, port: int = APP_PORT, timeout: float = 30.0
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream from `source`'s loopback to `port` on `peer`'s, through `source`'s SOCKS
        proxy (which introduces, punches and connects when there is no connection yet)."""
        reader, writer = await open_connection_in(
            self.namespace_of(source), "127.0.0.1", SOCKS_PORT
        )
        try:
            await asyncio.wait_for(socks5_connect(reader, writer, peer_host(peer), port), timeout)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def transfer(
        self, source: str, peer: str, size: int, timeout: float = 3600.0
    ) -> TransferResult:
        """`size` bytes from `source`'s application to the sink behind `peer`, hashed at
        both ends, with the CPU time both workers spent meanwhile."""
        reader, writer = await self.open_stream(source, peer)
        try:
            cpu_before = {w: self.cpu_seconds(w) for w in (source, peer)}
            ours, theirs = await asyncio.wait_for(
                send_blob(reader, writer, size, self.pattern), timeout
            )
            result = await asyncio.wait_for(self.app.sinks.get(), 10)
            cpu = {w: self.cpu_seconds(w) - cpu_before[w] for w in (source, peer)}
        finally:
            writer.close()
        sink_seconds = result.last_byte_at - result.first_byte_at
        return TransferResult(size, sink_seconds, ours, theirs, cpu)

    async def transfer_with_action(
        self,
        source: str,
        peer: str,
        size: int,
        at_fraction: float,
        action: Callable[[], None],
        timeout: float = 3600.0,
    ) -> TransferResult:
        """A transfer during which `action` runs (in a thread) once the sink has received
        `at_fraction` of it."""
        reached = asyncio.Event()

        def progress(received: int) -> None:
            if received >= size * at_fraction:
                reached.set()

        self.app.progress = progress
        transfer = asyncio.create_task(self.transfer(source, peer, size, timeout))
        waiting = asyncio.create_task(reached.wait())
        try:
            await asyncio.wait({transfer, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if not transfer.done():
                await asyncio.to_thread(action)
            return await transfer
        finally:
            self.app.progress = None
            waiting.cancel()
            transfer.cancel()

    # ------------------------------------------------------------------ workers' state

    def pid(self, worker_id: str) -> int:
        return self.workers[worker_id].process.pid

    def cpu_seconds(self, worker_id: str) -> float:
        """utime + stime of the worker's process (`taskset` and `ip netns exec` exec it)."""
        fields = Path(f"/proc/{self.pid(worker_id)}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def rss_bytes(self, worker_id: str) -> int:
        resident = Path(f"/proc/{self.pid(worker_id)}/statm").read_text().split()[1]
        return int(resident) * _PAGE_BYTES

    async def http(self, worker_id: str, method: str, path: str) -> tuple[int, Any]:
        return await asyncio.to_thread(
            http_request_json,
            self.namespace_of(worker_id),
            "127.0.0.1",
            self._http_ports[worker_id],
            method,
            path,
        )

    async def status(self, worker_id: str) -> dict[str, Any]:
        code, body = await self.http(worker_id, "GET", "/status")
        if code != 200 or not isinstance(body, dict):
            raise LabError(f"{worker_id} /status answered {code}: {body}")
        return body

    async def path(self, worker_id: str, peer_id: str) -> str:
        """The path (`direct`, `relay`) of `worker_id`'s newest live punch session with
        `peer_id`, from its /status; `none` without one."""
        paths = [
            str(s["path"])
            for s in (await self.status(worker_id))["sessions"]
            if s["peer_id"] == peer_id and s["state"] in ("connected", "relayed")
        ]
        return paths[-1] if paths else "none"

    async def echo_rtts(self, source: str, peer: str, count: int = 10) -> list[float]:
        """The path's round trip as the workers see it, in seconds: `POST
        /peers/{peer}/echo` on `source` (a sealed datagram each way on the session's
        current path, through both workers' event loops), `count` times."""
        rtts = []
        for _ in range(count):
            code, body = await self.http(source, "POST", f"/peers/{peer}/echo")
            if code == 200 and isinstance(body, dict) and body.get("rtt_ms") is not None:
                rtts.append(float(body["rtt_ms"]) / 1000)
        if not rtts:
            raise LabError(f"no echo from {peer} through {source} in {count} tries")
        return rtts

    # ------------------------------------------------------------------ the network

    @staticmethod
    def _udp_rules(other: int) -> list[list[str]]:
        return [
            ["FORWARD", "-p", "udp", "-d", wan_ip(other), "-j", "DROP"],
            ["FORWARD", "-p", "udp", "-s", wan_ip(other), "-j", "DROP"],
        ]

    def block_udp(self, nat: int, other: int) -> None:
        """NAT `nat` drops every UDP datagram to and from NAT `other`'s public address: the
        direct path between their hosts dies (the rendezvous, over TCP, stays)."""
        if (nat, other) in self._blocked:
            return
        for rule in self._udp_rules(other):
            self.lab.run(f"nat{nat}", ["iptables", "-I", *rule])
        self._blocked.add((nat, other))

    def unblock_udp(self, nat: int, other: int) -> None:
        if (nat, other) not in self._blocked:
            return
        for rule in self._udp_rules(other):
            self.lab.run(f"nat{nat}", ["iptables", "-D", *rule])
        self._blocked.discard((nat, other))
