"""`make soak`: minutes of worker churn over two rendezvous instances sharing Redis, checked.

A real `redis-server` and two `python -m holepunch_rendezvous` processes (A and B) with
`REGISTRY_URL` pointing at it. A population of simulated workers (WebSocket clients in this
process) churns for `--duration` seconds. Each worker, over and over:

- connects to a random instance (the other one if that fails), reports an endpoint and waits
  for the ack;
- while connected, reports a new endpoint now and then;
- then leaves cleanly, drops its TCP connection without a close, or reconnects with the same
  id while the old connection is still open (the old one must be closed with 4409);
- if the server drops it, it reconnects after a short pause, as the worker's backoff does.

Halfway through, instance B is killed with SIGKILL and started again on the same port.

Checked all along (every `--sample-interval`, alternating instances): no worker is listed
twice, and no worker that has been offline for longer than `REGISTRY_TTL_SEC` is listed. At
the end, with the churn stopped: both instances list exactly the connected workers, each
once (also through the paged listing) and each with the endpoint last acknowledged; Redis
holds an entry for each of them and for no one else, and no trace of the killed instance;
once every worker has left, nothing is listed. Memory (RSS of A, which lives through the
whole run, and Redis `used_memory`) is sampled and reported: the median over 20-35 % of the
run against the median of its last 10 %. In runs of two minutes or more, A's RSS growing by
more than `--max-rss-growth-mib` between the two fails the soak.

The checks live in `Ledger` (pure: what the load generator knows, and what a listing must
then hold), the I/O around it. Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from holepunch_rendezvous.store import DEFAULT_KEY_PREFIX, RedisKeys
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from holepunch_devtools.bench import Server, raise_nofile, rss_kib
from holepunch_devtools.listing import DuplicateKey, fetch_listing, fetch_paged, get_json
from holepunch_devtools.redis_server import RedisServer, redis_info

__all__ = ["Ledger", "SoakOptions", "SoakResult", "main", "memory_problems", "run_soak"]

MEMORY_JUDGED_AFTER_SEC = 120.0
REPLACED_CLOSE_CODE = 4409
Endpoint = tuple[str, int]


# ------------------------------------------------------------------ the checks (pure)


class Phase(enum.Enum):
    OFFLINE = "offline"
    CONNECTING = "connecting"
    ONLINE = "online"


@dataclass
class WorkerView:
    """What the load generator knows of one worker."""

    phase: Phase = Phase.OFFLINE
    offline_since: float = 0.0
    endpoint: Endpoint | None = None  # the last one the rendezvous acknowledged


def listed_endpoint(entry: Mapping[str, Any]) -> Endpoint | None:
    ip, port = entry.get("stun_reported_udp_ip"), entry.get("stun_reported_udp_port")
    return (ip, port) if isinstance(ip, str) and isinstance(port, int) else None


class Ledger:
    """Every simulated worker's state, and the checks a listing must pass against it."""

    def __init__(self, worker_ids: Iterable[str], ttl_sec: float, now: float) -> None:
        self.ttl_sec = ttl_sec
        self.workers = {worker_id: WorkerView(offline_since=now) for worker_id in worker_ids}

    def connecting(self, worker_id: str) -> None:
        self.workers[worker_id].phase = Phase.CONNECTING

    def acknowledged(self, worker_id: str, endpoint: Endpoint) -> None:
        view = self.workers[worker_id]
        view.phase = Phase.ONLINE
        view.endpoint = endpoint

    def went_offline(self, worker_id: str, now: float) -> None:
        view = self.workers[worker_id]
        if view.phase is not Phase.OFFLINE:
            view.phase = Phase.OFFLINE
            view.offline_since = now

    def online(self) -> dict[str, Endpoint | None]:
        return {
            worker_id: view.endpoint
            for worker_id, view in self.workers.items()
            if view.phase is Phase.ONLINE
        }

    def check_during_churn(self, listed: Mapping[str, Any], requested_at: float) -> list[str]:
        """A listing answered while workers churn: anyone offline since before
        `requested_at - ttl` (and still offline now) must not be in it."""
        problems = []
        for worker_id in listed:
            view = self.workers.get(worker_id)
            if view is None:
                problems.append(f"{worker_id}: listed but never started")
            elif view.phase is Phase.OFFLINE and view.offline_since < requested_at - self.ttl_sec:
                gone = requested_at - view.offline_since
                problems.append(f"{worker_id}: listed {gone:.1f} s after it went offline")
        return problems

    def check_settled(self, listed: Mapping[str, Any]) -> list[str]:
        """A listing once the churn has stopped: exactly the online workers, each with the
        endpoint last acknowledged."""
        problems = []
        online = self.online()
        for worker_id, endpoint in sorted(online.items()):
            entry = listed.get(worker_id)
            if entry is None:
                problems.append(f"{worker_id}: connected but not listed")
            elif listed_endpoint(entry) != endpoint:
                problems.append(
                    f"{worker_id}: listed with {listed_endpoint(entry)}, latest is {endpoint}"
                )
        problems += [
            f"{worker_id}: listed but not connected ({self.workers[worker_id].phase.value})"
            if worker_id in self.workers
            else f"{worker_id}: listed but never started"
            for worker_id in sorted(set(listed) - set(online))
        ]
        return problems


# ------------------------------------------------------------------ options and result


@dataclass(frozen=True)
class SoakOptions:
    duration_sec: float = 600.0
    workers: int = 1000
    ttl_sec: float = 15.0
    mean_lifetime_sec: float = 30.0
    mean_offline_sec: float = 10.0
    mean_update_interval_sec: float = 10.0
    sample_interval_sec: float = 5.0
    kill_at_fraction: float = 0.5
    restart_delay_sec: float = 2.0
    seed: int = 1
    # Judged only in runs of at least MEMORY_JUDGED_AFTER_SEC: a short run is all ramp-up.
    # The fixed code's allocator high-water rose 5-8 MiB and then held (docs/redis.md);
    # the timestamp cache it replaced grew 16 MiB in 10 minutes.
    max_rss_growth_mib: float = 12.0
    # How a connection ends: leave cleanly, drop the TCP connection, reconnect on top.
    leave_weights: tuple[float, float, float] = (0.6, 0.15, 0.25)


class Reading(NamedTuple):
    """One memory reading: seconds since the churn started, instance A's RSS (KiB), Redis
    `used_memory` (KiB), workers online, workers connected to A (None if A did not say)."""

    seconds: float
    rss_a_kib: float
    redis_kib: float
    online: int
    on_a: int | None


@dataclass
class SoakResult:
    options: dict[str, Any]
    counts: dict[str, int]
    listings_checked: int
    violations: list[str]
    online_at_end: int
    memory: dict[str, Any]
    redis_keys_at_end: dict[str, int] = field(default_factory=dict)
    timeline: list[Reading] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


# ------------------------------------------------------------------ the cluster


class Cluster:
    """redis-server and two rendezvous instances; B can be killed and started again."""

    def __init__(self, options: SoakOptions, log_dir: Path, redis_binary: str) -> None:
        self.options = options
        self.log_dir = log_dir
        self.redis = RedisServer(redis_binary, Path(tempfile.mkdtemp(prefix="redis-", dir=log_dir)))
        self.servers: list[Server] = []
        self.lives = Counter[int]()
        self.down: set[int] = set()

    @property
    def env(self) -> dict[str, str]:
        return {"REGISTRY_URL": self.redis.url, "REGISTRY_TTL_SEC": str(self.options.ttl_sec)}

    def _server(self, index: int, port: int | None = None) -> Server:
        self.lives[index] += 1
        log_path = self.log_dir / f"rendezvous-{'AB'[index]}-{self.lives[index]}.log"
        return Server("websockets-sansio", log_path, self.env, cpu=None, port=port)

    async def start(self) -> None:
        self.redis.start()
        self.servers = [self._server(0), self._server(1)]
        for server in self.servers:
            await server.wait_ready(30)

    def kill(self, index: int) -> None:
        self.down.add(index)
        self.servers[index].process.kill()
        self.servers[index].stop()

    async def restart(self, index: int) -> None:
        self.servers[index] = self._server(index, port=self.servers[index].port)
        await self.servers[index].wait_ready(30)
        self.down.discard(index)

    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    def life(self, index: int) -> int:
        """Which life of instance `index` is running (it changes when it is killed)."""
        return self.lives[index] + (100 if index in self.down else 0)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.redis.stop()


# ------------------------------------------------------------------ simulated workers


class SimulatedWorker:
    def __init__(
        self,
        worker_id: str,
        ip: str,
        ledger: Ledger,
        cluster: Cluster,
        rng: random.Random,
        options: SoakOptions,
        stopping: asyncio.Event,
        counts: Counter[str],
        violations: list[str],
    ) -> None:
        self.worker_id = worker_id
        self.ip = ip
        self.ledger = ledger
        self.cluster = cluster
        self.rng = rng
        self.options = options
        self.stopping = stopping
        self.counts = counts
        self.violations = violations
        self.socket: ClientConnection | None = None
        self.life = (0, 0)  # the instance of the current connection, and which life of it

    async def _pause(self, seconds: float) -> bool:
        """Sleep, but wake when the soak stops; True if it is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    def _now(self) -> float:
        return time.monotonic()

    async def _register(self) -> ClientConnection | None:
        """Connect to a random instance (then the other) and report an endpoint."""
        self.ledger.connecting(self.worker_id)
        instances = [0, 1]
        self.rng.shuffle(instances)
        for instance in instances:
            life = self.cluster.life(instance)
            port = self.cluster.servers[instance].port
            url = f"ws://127.0.0.1:{port}/ws/register/{self.worker_id}"
            try:
                ws = await connect(url, compression=None, ping_interval=None, open_timeout=10)
            except (OSError, InvalidHandshake, TimeoutError):
                self.counts["connect_failed"] += 1
                continue
            try:
                await self._report(ws)
            except ConnectionClosed:
                self.counts["closed_while_registering"] += 1
                continue
            self.counts["connected"] += 1
            self.life = (instance, life)
            return ws
        self.ledger.went_offline(self.worker_id, self._now())
        return None

    async def _report(self, ws: ClientConnection) -> None:
        endpoint = (self.ip, self.rng.randrange(1024, 65536))
        frame = {
            "type": "update_udp_endpoint",
            "udp_ip": endpoint[0],
            "udp_port": endpoint[1],
            "mapping": "endpoint_independent",
            "local_port": 40000,
        }
        await ws.send(json.dumps(frame))
        reply = json.loads(await ws.recv())
        if reply.get("type") != "udp_endpoint_ack" or reply.get("status") != "success":
            self.violations.append(f"{self.worker_id}: endpoint update answered {reply}")
            return
        self.ledger.acknowledged(self.worker_id, endpoint)
        self.counts["endpoint_acknowledged"] += 1

    async def run(self) -> None:
        first_delay = self.rng.uniform(0, min(5.0, self.options.duration_sec / 10))
        if await self._pause(first_delay):
            return
        while not self.stopping.is_set():
            ws = await self._register()
            if ws is None:
                if await self._pause(self.rng.uniform(0.2, 1.0)):
                    return
                continue
            self.socket = ws
            try:
                ended_by_us = await self._live()
            except ConnectionClosed as closed:
                self._lost(closed)
                # Most reconnect at once; some stay away past the TTL, as a worker that died
                # with the instance would, so that the expiry of its entry is checked.
                ttl = self.options.ttl_sec
                stays_away = self.rng.random() < 0.3
                away = self.rng.uniform(ttl, 2 * ttl) if stays_away else self.rng.uniform(0.2, 1.0)
                if await self._pause(away):
                    return
                continue
            if self.stopping.is_set() and not ended_by_us:
                return  # stays connected for the final checks
            if await self._pause(self.rng.expovariate(1 / self.options.mean_offline_sec)):
                return

    async def _live(self) -> bool:
        """Connected: update now and then, then end one way or another. True if the
        connection ended (the worker is offline), False if the soak stopped first."""
        lifetime_ends = self._now() + self.rng.expovariate(1 / self.options.mean_lifetime_sec)
        while True:
            pause = self.rng.expovariate(1 / self.options.mean_update_interval_sec)
            pause = min(pause, max(0.0, lifetime_ends - self._now()))
            if await self._pause(pause):
                return False
            assert self.socket is not None
            if self._now() < lifetime_ends:
                await self._report(self.socket)
                continue
            how = self.rng.choices(("leave", "drop", "replace"), self.options.leave_weights)[0]
            if how == "replace":
                if not await self._replace():
                    return True
                lifetime_ends = self._now() + self.rng.expovariate(
                    1 / self.options.mean_lifetime_sec
                )
                continue
            if how == "leave":
                await self.socket.close()
                self.counts["left"] += 1
            else:
                self.socket.transport.abort()
                self.counts["dropped_by_worker"] += 1
            self.ledger.went_offline(self.worker_id, self._now())
            self.socket = None
            return True

    async def _replace(self) -> bool:
        """A second connection with the same id while the first is open: the first must
        be closed with 4409. False if no instance took the new one (the worker is then
        offline: the old connection is closed too)."""
        old = self.socket
        assert old is not None
        old_life = self.life
        new = await self._register()
        if new is None:
            await old.close()
            self.ledger.went_offline(self.worker_id, self._now())
            self.socket = None
            return False
        self.socket = new
        try:
            await asyncio.wait_for(old.wait_closed(), 10)
        except TimeoutError:
            self.violations.append(f"{self.worker_id}: old connection open 10 s after replacement")
            old.transport.abort()
            return True
        received = old.protocol.close_rcvd
        code = received.code if received is not None else None
        if code == REPLACED_CLOSE_CODE:
            self.counts["replaced"] += 1
        elif code is None and self.cluster.life(old_life[0]) != old_life[1]:
            self.counts["replaced_old_lost_to_kill"] += 1
        else:
            self.violations.append(f"{self.worker_id}: replaced connection closed with {code}")
        return True

    def _lost(self, closed: ConnectionClosed) -> None:
        """The server ended a connection: only a killed instance may do that here."""
        code = closed.rcvd.code if closed.rcvd is not None else None
        instance, life = self.life
        if code is None and self.cluster.life(instance) != life:
            self.counts["lost_to_kill"] += 1
        else:
            self.violations.append(
                f"{self.worker_id}: connection to instance {'AB'[instance]} ended by the "
                f"server with {code}: {closed}"
            )
        self.ledger.went_offline(self.worker_id, self._now())
        self.socket = None


# ------------------------------------------------------------------ the run


class Sampler:
    """Every `interval`: a listing checked against the ledger, and memory readings."""

    def __init__(
        self,
        cluster: Cluster,
        ledger: Ledger,
        violations: list[str],
        counts: Counter[str],
        started: float,
    ) -> None:
        """`started`: when the churn started (monotonic); readings count from it."""
        self.cluster = cluster
        self.ledger = ledger
        self.violations = violations
        self.counts = counts
        self.started = started
        self.listings_checked = 0
        self.timeline: list[Reading] = []

    async def check_once(self, instance: int) -> None:
        if instance in self.cluster.down:
            instance = 1 - instance
        requested_at = time.monotonic()
        try:
            listing = await fetch_listing(self.cluster.servers[instance].port)
        except DuplicateKey as error:
            self.violations.append(f"instance {'AB'[instance]}: {error}")
            return
        except (OSError, RuntimeError):
            self.counts["listing_failed"] += 1  # the instance was just killed
            return
        # No await between the answer and the check: the ledger is as of the answer.
        self.violations.extend(self.ledger.check_during_churn(listing["workers"], requested_at))
        self.listings_checked += 1

    async def read_memory(self) -> None:
        seconds = round(time.monotonic() - self.started, 1)
        rss = rss_kib(self.cluster.servers[0].pid)
        redis_used = int(redis_info(self.cluster.redis.port, "memory")["used_memory"]) / 1024
        online = len(self.ledger.online())
        on_a: int | None = None
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            on_a = (await get_json(self.cluster.servers[0].port, "/debug/registry"))[
                "local_workers"
            ]
        self.timeline.append(Reading(seconds, rss, redis_used, online, on_a))

    def memory(self) -> dict[str, dict[str, float]]:
        """Each memory series summarised by `_series`."""
        return {
            "rendezvous_a_rss_kib": _series([(r.seconds, r.rss_a_kib) for r in self.timeline]),
            "redis_used_memory_kib": _series([(r.seconds, r.redis_kib) for r in self.timeline]),
            "online_workers": _series([(r.seconds, r.online) for r in self.timeline]),
        }

    async def run(self, interval: float) -> None:
        instance = 0
        while True:
            await self.check_once(instance)
            await self.read_memory()
            instance = 1 - instance
            await asyncio.sleep(interval)  # a sampling period, not a synchronisation


async def _until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))  # the soak's schedule


async def _instance_ids(cluster: Cluster) -> set[str]:
    return {
        (await get_json(server.port, "/debug/registry"))["instance_id"]
        for server in cluster.servers
    }


def _suffixes(keys: Iterable[str], namespace: str) -> set[str]:
    """What follows `namespace` in each key of it: worker ids, instance ids."""
    return {key[len(namespace) :] for key in keys if key.startswith(namespace)}


def audit_redis(
    url: str, online: Iterable[str], live_instances: set[str]
) -> tuple[list[str], dict[str, int]]:
    """What Redis holds against what should be there: an entry per connected worker on a
    live instance, nothing of the killed one, no sessions."""
    import redis

    client: Any = redis.Redis.from_url(url, decode_responses=True)
    try:
        names = RedisKeys(DEFAULT_KEY_PREFIX)
        keys = list(client.scan_iter(match=f"{DEFAULT_KEY_PREFIX}*", count=1000))
        kinds = Counter(key[len(DEFAULT_KEY_PREFIX) :].split(":", 1)[0] for key in keys)
        expected = set(online)
        problems = []
        entries = _suffixes(keys, names.namespaces["worker"])
        if entries != expected:
            problems.append(
                f"redis entries: {len(entries - expected)} extra "
                f"{sorted(entries - expected)[:5]}, {len(expected - entries)} missing "
                f"{sorted(expected - entries)[:5]}"
            )
        for worker_id in sorted(entries & expected):
            instance = client.hget(names.worker(worker_id), "inst")
            if instance not in live_instances:
                problems.append(f"redis entry {worker_id} belongs to dead instance {instance}")
        indexed = set(client.zrange(names.ids, 0, -1))
        if indexed != expected:
            problems.append(
                f"redis index: {len(indexed - expected)} extra, {len(expected - indexed)} missing"
            )
        instances = set(client.zrange(names.instances, 0, -1))
        if instances != live_instances:
            problems.append(f"redis instances {sorted(instances)}, live {sorted(live_instances)}")
        held: set[str] = set()
        for instance in _suffixes(keys, names.namespaces["held"]):
            if instance not in live_instances:
                problems.append(f"redis keeps the set of dead instance {instance}")
            held |= set(client.smembers(names.namespaces["held"] + instance))
        if held != expected:
            problems.append(f"redis instance sets hold {len(held)} ids, {len(expected)} online")
        return problems, dict(kinds)
    finally:
        client.close()


async def run_soak(options: SoakOptions, log_dir: Path, redis_binary: str) -> SoakResult:
    cluster = Cluster(options, log_dir, redis_binary)
    counts: Counter[str] = Counter()
    violations: list[str] = []
    worker_tasks: list[asyncio.Task[None]] = []
    sampler_task: asyncio.Task[None] | None = None
    workers: list[SimulatedWorker] = []
    try:
        await cluster.start()
        rng = random.Random(options.seed)
        started = time.monotonic()
        ids = [f"soak-{i:05d}" for i in range(options.workers)]
        ledger = Ledger(ids, options.ttl_sec, started)
        stopping = asyncio.Event()
        workers = [
            SimulatedWorker(
                worker_id,
                f"198.18.{i >> 8 & 255}.{i & 255}",
                ledger,
                cluster,
                random.Random(rng.random()),
                options,
                stopping,
                counts,
                violations,
            )
            for i, worker_id in enumerate(ids)
        ]
        worker_tasks = [asyncio.create_task(worker.run()) for worker in workers]
        sampler = Sampler(cluster, ledger, violations, counts, started)
        sampler_task = asyncio.create_task(sampler.run(options.sample_interval_sec))

        await _until(started + options.duration_sec * options.kill_at_fraction)
        cluster.kill(1)
        killed_at = time.monotonic()
        await asyncio.sleep(options.restart_delay_sec)  # B stays down this long
        await cluster.restart(1)
        await _until(started + options.duration_sec)

        stopping.set()
        await asyncio.wait_for(asyncio.gather(*worker_tasks), 60)
        sampler_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler_task
        # Whatever the killed instance held has had its TTL to expire.
        await _until(killed_at + options.ttl_sec + 1.0)

        online = ledger.online()
        for index, server in enumerate(cluster.servers):
            name = "AB"[index]
            try:
                listing = await fetch_listing(server.port)
                paged = await fetch_paged(server.port)
            except DuplicateKey as error:
                violations.append(f"final listing on {name}: {error}")
                continue
            if listing["connected_workers_count"] != len(online):
                violations.append(
                    f"{name}: connected_workers_count {listing['connected_workers_count']}, "
                    f"{len(online)} connected"
                )
            violations += [
                f"final on {name}: {p}" for p in ledger.check_settled(listing["workers"])
            ]
            violations += [f"final paged on {name}: {p}" for p in ledger.check_settled(paged)]
        redis_problems, redis_keys = audit_redis(
            cluster.redis.url, online, await _instance_ids(cluster)
        )
        violations += redis_problems

        # Everyone leaves: nothing may stay listed.
        await asyncio.gather(
            *(w.socket.close() for w in workers if w.socket is not None), return_exceptions=True
        )
        for worker in workers:
            ledger.went_offline(worker.worker_id, time.monotonic())
        drained_by = time.monotonic() + 10
        while True:
            left = [len((await fetch_listing(port))["workers"]) for port in cluster.ports()]
            if not any(left) or time.monotonic() > drained_by:
                break
            await asyncio.sleep(0.1)  # polling other processes, bounded by the deadline
        if any(left):
            violations.append(f"after everyone left, the instances still list {left} workers")
        empty_problems, _ = audit_redis(cluster.redis.url, (), await _instance_ids(cluster))
        violations += [f"after everyone left: {p}" for p in empty_problems]

        memory = sampler.memory()
        violations += memory_problems(
            memory["rendezvous_a_rss_kib"],
            options.max_rss_growth_mib,
            options.duration_sec,
            "instance A's RSS",
        )
        return SoakResult(
            options=asdict(options),
            counts=dict(counts),
            listings_checked=sampler.listings_checked,
            violations=violations,
            online_at_end=len(online),
            memory=memory,
            redis_keys_at_end=redis_keys,
            timeline=sampler.timeline,
        )
    finally:
        for task in [*worker_tasks, *([sampler_task] if sampler_task else [])]:
            task.cancel()
        await asyncio.gather(*worker_tasks, return_exceptions=True)
        for worker in workers:
            if worker.socket is not None:
                worker.socket.transport.abort()
        cluster.stop()


def _series(samples: Sequence[tuple[float, float]]) -> dict[str, float]:
    """First sample, median over 20-35 % of the run, median of the last 10 %, growth."""
    if not samples:
        return {}
    t0, t1 = samples[0][0], samples[-1][0]
    span = max(t1 - t0, 1e-9)
    early = [v for t, v in samples if 0.2 <= (t - t0) / span <= 0.35] or [samples[0][1]]
    late = [v for t, v in samples if (t - t0) / span >= 0.9] or [samples[-1][1]]
    return {
        "first": samples[0][1],
        "early": statistics.median(early),
        "late": statistics.median(late),
        "growth": statistics.median(late) - statistics.median(early),
        "max": max(v for _, v in samples),
        "samples": len(samples),
    }


def memory_problems(
    series: Mapping[str, float], limit_mib: float, duration_sec: float, name: str
) -> list[str]:
    """A violation if `series` (KiB) grew more than `limit_mib` from 20-35 % of the run to
    its last 10 %; nothing to judge in a run shorter than MEMORY_JUDGED_AFTER_SEC."""
    if duration_sec < MEMORY_JUDGED_AFTER_SEC or not series:
        return []
    growth_mib = series["growth"] / 1024
    if growth_mib <= limit_mib:
        return []
    return [
        f"{name} grew {growth_mib:.1f} MiB ({series['early'] / 1024:.1f} MiB at 20-35 % of "
        f"the run, {series['late'] / 1024:.1f} MiB in its last 10 %), more than {limit_mib:g} MiB"
    ]


# ------------------------------------------------------------------ command line


def print_result(result: SoakResult, elapsed: float) -> None:
    print(f"soak finished in {elapsed:.0f} s: {'PASS' if result.ok else 'FAIL'}")
    print("  events: " + ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())))
    print(f"  listings checked during churn: {result.listings_checked}")
    print(f"  connected at the end: {result.online_at_end}")
    print(f"  redis keys at the end: {result.redis_keys_at_end}")
    for name, series in result.memory.items():
        if series:
            print(
                f"  {name}: first {series['first']:.0f}, 20-35 % {series['early']:.0f}, "
                f"last 10 % {series['late']:.0f}, growth {series['growth']:+.0f}, "
                f"max {series['max']:.0f} ({series['samples']:.0f} samples)"
            )
    for violation in result.violations[:50]:
        print(f"  VIOLATION {violation}")
    if len(result.violations) > 50:
        print(f"  ... and {len(result.violations) - 50} more")


def main(argv: Sequence[str] | None = None) -> int:
    defaults = SoakOptions()
    parser = argparse.ArgumentParser(prog="holepunch-soak", description=__doc__.split("\n")[0])

    def option(name: str, kind: Callable[[str], Any], help_text: str) -> None:
        attribute = name.lstrip("-").replace("-", "_")
        parser.add_argument(
            name,
            type=kind,
            default=getattr(defaults, attribute),
            dest=attribute,
            help=f"{help_text} (default %(default)s)",
        )

    option("--duration-sec", float, "how long the churn lasts")
    option("--workers", int, "simulated workers")
    option("--ttl-sec", float, "REGISTRY_TTL_SEC of both instances")
    option("--mean-lifetime-sec", float, "mean time a connection lasts")
    option("--mean-offline-sec", float, "mean time a worker stays away after leaving")
    option("--mean-update-interval-sec", float, "mean time between endpoint updates")
    option("--sample-interval-sec", float, "time between checked listings")
    option("--seed", int, "random seed")
    option("--max-rss-growth-mib", float, "how much instance A's RSS may grow")
    parser.add_argument("--json-out", type=Path, help="also write the result to this JSON file")
    parser.add_argument("--log-dir", type=Path, help="keep the servers' logs here")
    args = parser.parse_args(argv)
    options = SoakOptions(
        **{
            key: getattr(args, key)
            for key in (
                "duration_sec",
                "workers",
                "ttl_sec",
                "mean_lifetime_sec",
                "mean_offline_sec",
                "mean_update_interval_sec",
                "sample_interval_sec",
                "seed",
                "max_rss_growth_mib",
            )
        }
    )
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        parser.error("needs redis-server (Debian package redis-server)")
    raise_nofile()
    print(
        f"soak: {options.workers} workers churning for {options.duration_sec:.0f} s over two "
        f"rendezvous instances sharing redis-server (TTL {options.ttl_sec:g} s); instance B "
        f"is killed at {options.kill_at_fraction:.0%} of the run; {os.cpu_count()} CPUs",
        flush=True,
    )
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        log_dir = args.log_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="hp-soak-"))
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run_soak(options, log_dir, redis_binary))
    print_result(result, time.monotonic() - started)
    if args.json_out:
        args.json_out.write_text(json.dumps({**asdict(result), "ok": result.ok}, indent=2) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
