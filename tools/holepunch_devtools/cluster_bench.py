"""`make bench-cluster`: N workers over two rendezvous instances sharing one Redis.

Everything runs as it would deployed, on this machine: a real `redis-server` on loopback
(fresh for each run) and two `python -m holepunch_rendezvous` processes with
`REGISTRY_URL` pointing at it. Nothing is pinned: the two instances, Redis and this load
generator share the machine's cores, as they would share nothing on Cloud Run, so the
registration rate is what this machine manages with all four busy.

For each run:

1. connect+register: worker i connects to instance i % 2, sends `update_udp_endpoint` and
   waits for the ack (which comes only after the write to Redis), with at most
   `--concurrency` handshakes in flight. Figures: registrations/s (N / wall time); CPU ms per
   registration of the two instances together, of redis-server and of the load generator
   (utime+stime deltas from /proc); Redis round trips per registration (the instances' own
   counters from `/debug/registry`, `connect` + `save`, and everything they sent meanwhile,
   heartbeats included); Redis commands per registration (`INFO stats`).
2. memory: RSS per connection of each instance, Redis `used_memory` per worker.
3. list: `GET /debug/list_workers` (the full list, from Redis) three times on each instance,
   each answer checked to hold all N workers exactly once; and one page of 1,000.

`--parsers hiredis,python` alternates runs with redis-py's hiredis reply parser and with
its pure-Python one (the instance is started with `hiredis` made unimportable).
No pass/fail: it prints figures (and `--json-out` writes them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection

from holepunch_devtools.bench import (
    DEFAULT_CONCURRENCY,
    Server,
    _register,
    cpu_ms,
    http_get,
    raise_nofile,
    rss_kib,
    run_calibrated,
)
from holepunch_devtools.listing import get_json, parse_listing
from holepunch_devtools.redis_server import RedisServer, redis_info

__all__ = ["ClusterResult", "main", "run_cluster_bench"]

DEFAULT_WORKERS = 5000
INSTANCES = 2
PARSERS = ("hiredis", "python")
# `python -m holepunch_rendezvous`, with redis-py's hiredis parser unavailable.
WITHOUT_HIREDIS = (
    "-c",
    "import runpy, sys; sys.modules['hiredis'] = None; "
    "runpy.run_module('holepunch_rendezvous', run_name='__main__', alter_sys=True)",
)


# The store operations one registration makes: the key-binding check, the claim, the record.
REGISTRATION_TRIPS = ("key_binding", "connect", "save")


@dataclass
class ClusterResult:
    workers: int
    parser: str
    registered: int
    failed: int
    register_wall_s: float
    registrations_per_s: float
    server_cpu_ms_per_registration: float
    redis_cpu_ms_per_registration: float
    load_cpu_ms_per_registration: float
    round_trips_per_registration: float
    all_round_trips_per_registration: float
    redis_commands_per_registration: float
    rss_kib_per_connection: list[float]
    redis_bytes_per_worker: float
    list_ms: float
    list_ms_runs: list[float] = field(default_factory=list)
    list_bytes: int = 0
    list_page_ms: float = 0.0
    round_trips: dict[str, int] = field(default_factory=dict)


async def _round_trips(servers: Sequence[Server]) -> dict[str, int]:
    total: dict[str, int] = {}
    for server in servers:
        described = await get_json(server.port, "/debug/registry")
        for name, count in described["round_trips"].items():
            total[name] = total.get(name, 0) + int(count)
    return total


async def _wait_ready(servers: Sequence[Server], timeout: float = 30.0) -> None:
    for server in servers:
        await server.wait_ready(timeout)  # /healthz 200: Redis reachable and subscribed


async def cluster_one(
    workers: int, parser: str, concurrency: int, log_dir: Path, redis_binary: str
) -> ClusterResult:
    redis_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=log_dir))
    redis = RedisServer(redis_binary, redis_dir)
    redis.start()
    servers: list[Server] = []
    sockets: list[ClientConnection] = []
    try:
        env = {"REGISTRY_URL": redis.url}
        python_args = WITHOUT_HIREDIS if parser == "python" else ("-m", "holepunch_rendezvous")
        for index in range(INSTANCES):
            log_path = log_dir / f"rendezvous-{parser}-{workers}-{index}.log"
            servers.append(
                Server("websockets-sansio", log_path, env, cpu=None, python_args=python_args)
            )
        await _wait_ready(servers)
        rss_idle = [rss_kib(server.pid) for server in servers]
        redis_memory_idle = int(redis_info(redis.port, "memory")["used_memory"])

        # 1. connect + register, spread over the instances
        trips0 = await _round_trips(servers)
        commands0 = int(redis_info(redis.port, "stats")["total_commands_processed"])
        server_cpu0 = sum(cpu_ms(server.pid) for server in servers)
        redis_cpu0, load_cpu0 = cpu_ms(redis.pid), cpu_ms(os.getpid())
        gate = asyncio.Semaphore(concurrency)
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(_register(servers[i % INSTANCES].port, i, gate) for i in range(workers))
        )
        wall = time.perf_counter() - started
        server_cpu = sum(cpu_ms(server.pid) for server in servers) - server_cpu0
        redis_cpu, load_cpu = cpu_ms(redis.pid) - redis_cpu0, cpu_ms(os.getpid()) - load_cpu0
        commands = int(redis_info(redis.port, "stats")["total_commands_processed"]) - commands0
        trips1 = await _round_trips(servers)
        trips = {
            name: n - trips0.get(name, 0) for name, n in trips1.items() if n > trips0.get(name, 0)
        }
        sockets = [ws for ws in outcomes if isinstance(ws, ClientConnection)]
        failures = [error for error in outcomes if not isinstance(error, ClientConnection)]
        if failures:
            print(f"  {len(failures)} registrations failed, e.g. {failures[0]!r}", file=sys.stderr)
        registered = max(len(sockets), 1)

        # 2. memory
        rss_connected = [rss_kib(server.pid) for server in servers]
        redis_memory = int(redis_info(redis.port, "memory")["used_memory"])

        # 3. the full list from each instance, and one page
        runs: list[float] = []
        size = 0
        for _ in range(3):
            for server in servers:
                t0 = time.perf_counter()
                status, body = await http_get(server.port, "/debug/list_workers")
                runs.append((time.perf_counter() - t0) * 1000.0)
                if status != 200:
                    raise RuntimeError(f"list_workers answered {status}")
                listed = parse_listing(body)
                count = listed["connected_workers_count"]
                if len(listed["workers"]) != len(sockets) or count != len(sockets):
                    raise RuntimeError(
                        f"instance on {server.port} lists {len(listed['workers'])} workers "
                        f"(count {count}), expected {len(sockets)}"
                    )
                size = len(body)
        t1 = time.perf_counter()
        await get_json(servers[0].port, "/debug/list_workers?limit=1000")
        page_ms = (time.perf_counter() - t1) * 1000.0

        return ClusterResult(
            workers=workers,
            parser=parser,
            registered=len(sockets),
            failed=len(failures),
            register_wall_s=wall,
            registrations_per_s=len(sockets) / wall,
            server_cpu_ms_per_registration=server_cpu / registered,
            redis_cpu_ms_per_registration=redis_cpu / registered,
            load_cpu_ms_per_registration=load_cpu / registered,
            round_trips_per_registration=sum(trips.get(name, 0) for name in REGISTRATION_TRIPS)
            / registered,
            all_round_trips_per_registration=sum(trips.values()) / registered,
            redis_commands_per_registration=commands / registered,
            rss_kib_per_connection=[
                (after - before) / (registered / INSTANCES)
                for before, after in zip(rss_idle, rss_connected, strict=True)
            ],
            redis_bytes_per_worker=(redis_memory - redis_memory_idle) / registered,
            list_ms=statistics.median(runs),
            list_ms_runs=runs,
            list_bytes=size,
            list_page_ms=page_ms,
            round_trips=trips,
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        for server in servers:
            server.stop()
        redis.stop()


COLUMNS = (
    ("parser", "parser", "{}"),
    ("N", "workers", "{}"),
    ("reg/s", "registrations_per_s", "{:.0f}"),
    ("server ms/reg", "server_cpu_ms_per_registration", "{:.3f}"),
    ("redis ms/reg", "redis_cpu_ms_per_registration", "{:.3f}"),
    ("load ms/reg", "load_cpu_ms_per_registration", "{:.3f}"),
    ("RTT/reg", "round_trips_per_registration", "{:.2f}"),
    ("all RTT/reg", "all_round_trips_per_registration", "{:.2f}"),
    ("cmds/reg", "redis_commands_per_registration", "{:.2f}"),
    ("list ms", "list_ms", "{:.1f}"),
    ("page ms", "list_page_ms", "{:.1f}"),
    ("redis B/wkr", "redis_bytes_per_worker", "{:.0f}"),
    ("failed", "failed", "{}"),
)


def print_header() -> None:
    print("  ".join(title.rjust(max(len(title), 8)) for title, _, _ in COLUMNS), flush=True)


def print_row(result: ClusterResult, note: str = "") -> None:
    values = asdict(result)
    cells = [fmt.format(values[key]).rjust(max(len(title), 8)) for title, key, fmt in COLUMNS]
    kib = "/".join(f"{value:.1f}" for value in result.rss_kib_per_connection)
    print(f"{'  '.join(cells)}  KiB/conn {kib}  {note}".rstrip(), flush=True)


async def run_cluster_bench(
    workers: int,
    parsers: Sequence[str],
    repeat: int,
    concurrency: int = DEFAULT_CONCURRENCY,
    log_dir: Path | None = None,
) -> list[ClusterResult]:
    """`repeat` rounds; each round runs every parser once, so parsers alternate."""
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        raise SystemExit("bench-cluster needs redis-server (Debian package redis-server)")
    results: list[ClusterResult] = []
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hp-cluster-")))
        print_header()
        for round_index in range(repeat):
            for parser in parsers:
                result = await cluster_one(workers, parser, concurrency, log_dir, redis_binary)
                print_row(result, f"run {round_index + 1}/{repeat}")
                results.append(result)
    if repeat > 1:
        for parser in parsers:
            runs = [result for result in results if result.parser == parser]
            print_row(median_result(runs), "median")
    return results


def median_result(runs: Sequence[ClusterResult]) -> ClusterResult:
    merged = asdict(runs[0])
    for key, value in merged.items():
        if isinstance(value, float):
            merged[key] = statistics.median(getattr(run, key) for run in runs)
    merged["rss_kib_per_connection"] = [
        statistics.median(run.rss_kib_per_connection[i] for run in runs) for i in range(INSTANCES)
    ]
    merged["list_ms_runs"] = [ms for run in runs for ms in run.list_ms_runs]
    merged["list_ms"] = statistics.median(merged["list_ms_runs"])
    return ClusterResult(**merged)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="holepunch-bench-cluster", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="default %(default)s")
    parser.add_argument(
        "--parsers",
        default=",".join(PARSERS),
        help="redis-py reply parsers to compare, alternated: hiredis, python (default %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default %(default)s)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="handshakes in flight (default %(default)s)",
    )
    parser.add_argument("--json-out", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--log-dir", type=Path, help="keep the servers' logs here")
    args = parser.parse_args(argv)
    parsers = [name.strip() for name in args.parsers.split(",") if name.strip()]
    unknown = set(parsers) - set(PARSERS)
    if unknown:
        parser.error(f"unknown parser(s) {sorted(unknown)}: choose from {', '.join(PARSERS)}")
    if "hiredis" in parsers:
        try:
            import hiredis  # noqa: F401
        except ImportError:
            parser.error("hiredis is not installed here: pip install hiredis, or --parsers python")
    nofile = raise_nofile()
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"cluster bench: {INSTANCES} rendezvous instances + redis-server + load generator on "
        f"{os.cpu_count()} CPUs, RLIMIT_NOFILE {nofile}, Python {sys.version.split()[0]}",
        flush=True,
    )
    run_calibrated(
        run_cluster_bench(args.workers, parsers, args.repeat, args.concurrency, args.log_dir),
        args.json_out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
