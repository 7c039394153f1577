"""`make bench`: load the rendezvous with N workers and print what it costs.

The server runs as the container runs it: a subprocess `python -m holepunch_rendezvous`
with PORT set, structured logging on and stdout (the JSON log lines) going to a file.
It is pinned to one core, this load generator to the other. For each N:

1. connect+register: N WebSocket clients connect, send `update_udp_endpoint` and wait
   for the ack (at most `--concurrency` handshakes in flight). Figures: registrations/s
   (N / wall time) and server CPU ms per registration (utime+stime delta from
   /proc/PID/stat over the phase, / N).
2. memory: (VmRSS with N connected - VmRSS idle before) / N, from /proc/PID/status.
3. echo: all N send an `echo_request` at once; each client's latency is send -> response.
4. list: wall time and body size of GET /debug/list_workers (full list, the default).

Each N gets a fresh server. No pass/fail: it prints figures (and `--json-out` writes them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["BenchResult", "main", "run_bench"]

DEFAULT_WORKERS = (1000, 5000)
DEFAULT_WS_IMPL = "websockets-sansio"
DEFAULT_CONCURRENCY = 256
DEFAULT_REPEAT = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SERVER_CPU = 0
LOAD_CPU = 1


@dataclass
class BenchResult:
    workers: int
    ws_impl: str
    registered: int
    failed: int
    register_wall_s: float
    registrations_per_s: float
    cpu_ms_per_registration: float
    sys_ms_per_registration: float
    rss_idle_kib: int
    rss_connected_kib: int
    rss_kib_per_connection: float
    echo_p50_ms: float
    echo_p99_ms: float
    echo_max_ms: float
    echo_wall_ms: float
    cpu_ms_per_echo: float
    list_ms: float
    list_ms_runs: list[float] = field(default_factory=list)
    list_bytes: int = 0
    list_page_ms: float = 0.0
    background_cpu_percent: float = 0.0
    repeats: int = 1
    log_lines: int = 0
    log_bytes: int = 0


# ------------------------------------------------------------------ /proc readings


def cpu_times_ms(pid: int) -> tuple[float, float]:
    """utime and stime of `pid`, in milliseconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) * 1000.0 / CLK_TCK, int(fields[12]) * 1000.0 / CLK_TCK


def cpu_ms(pid: int) -> float:
    """utime + stime of `pid`, in milliseconds."""
    return sum(cpu_times_ms(pid))


def calibrate_ms(iterations: int = 5_000_000) -> float:
    """CPU ms of a fixed pure-Python loop: this machine's speed right now (shared hosts
    vary by tens of percent), to read the CPU figures against."""
    started = time.process_time()
    total = 0
    for i in range(iterations):
        total += i
    return (time.process_time() - started) * 1000.0


def busy_ms() -> float:
    """CPU time every process on the machine has used (all cores), in milliseconds."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) * 1000.0 / CLK_TCK


async def wait_for_quiet(limit_percent: float = 15.0, timeout: float = 60.0) -> float:
    """Wait until the rest of the machine uses under `limit_percent` of a core (others' tests
    share it); return the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        before, t0 = busy_ms(), time.monotonic()
        await asyncio.sleep(0.5)
        percent = 100 * (busy_ms() - before) / ((time.monotonic() - t0) * 1000.0)
        if percent < limit_percent or time.monotonic() > deadline:
            return percent
        print(f"  machine busy ({percent:.0f}% of a core): waiting", file=sys.stderr)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


def raise_nofile(wanted: int = 65536) -> int:
    """Lift RLIMIT_NOFILE (inherited by the server subprocess); return the soft limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # only root may lift the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard if hard != resource.RLIM_INFINITY else wanted


def pin(pid: int, cpu: int) -> None:
    """Pin `pid` to one core, when the machine has it."""
    if cpu in os.sched_getaffinity(0) or cpu < (os.cpu_count() or 1):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ------------------------------------------------------------------ the server


class Server:
    """`python -m holepunch_rendezvous` as the container starts it, logs to a file."""

    def __init__(
        self,
        ws_impl: str,
        log_path: Path,
        extra_env: dict[str, str],
        *,
        cpu: int | None = SERVER_CPU,
        python_args: Sequence[str] = ("-m", "holepunch_rendezvous"),
        port: int | None = None,
    ) -> None:
        """`cpu`: the core to pin it to (None: wherever the kernel puts it); `python_args`:
        what follows `python` on the command line."""
        self.port = port or free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",  # as in the Dockerfile: each log line is written at once
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WS_IMPLEMENTATION": ws_impl,
            "AUTH_MODE": "none",
            "DEBUG_ENDPOINTS": "1",
            # Every simulated worker connects from 127.0.0.1: lift the per-address limit.
            "MAX_CONNECTIONS_PER_ADDRESS": "1000000",
            **extra_env,
        }
        self.process = subprocess.Popen(
            [sys.executable, *python_args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=None if cpu is None else lambda: pin(0, cpu),
        )
        self.pid = self.process.pid

    async def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"server exited with {self.process.returncode}: {tail}")
            with contextlib.suppress(OSError):
                status, _ = await http_get(self.port, "/healthz")
                if status == 200:
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def log_stats(self) -> tuple[int, int]:
        data = self.log_path.read_bytes()
        return data.count(b"\n"), len(data)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """A bare HTTP/1.1 GET (Connection: close): status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


# ------------------------------------------------------------------ the load


def _update_frame(index: int) -> str:
    return json.dumps(
        {
            "type": "update_udp_endpoint",
            "udp_ip": f"203.0.{(index >> 8) & 255}.{index & 255}",
            "udp_port": 10000 + index % 50000,
            "mapping": "endpoint_independent",
            "local_port": 40000 + index % 20000,
        }
    )


async def _register(
    port: int, index: int, gate: asyncio.Semaphore
) -> ClientConnection | BaseException:
    url = f"ws://127.0.0.1:{port}/ws/register/bench-worker-{index:05d}"
    async with gate:
        try:
            ws = await connect(
                url, compression=None, ping_interval=None, open_timeout=60, close_timeout=5
            )
            await ws.send(_update_frame(index))
            reply = json.loads(await ws.recv())
            if reply.get("status") != "success":
                await ws.close()
                return RuntimeError(f"unexpected reply {reply}")
            return ws
        except Exception as error:
            return error


async def _echo(ws: ClientConnection, start: asyncio.Event, index: int) -> float:
    frame = json.dumps({"type": "echo_request", "payload": f"hello from {index}"})
    await start.wait()
    sent = time.perf_counter()
    await ws.send(frame)
    reply = await ws.recv()
    elapsed = time.perf_counter() - sent
    if b'"echo_response"' not in (reply if isinstance(reply, bytes) else reply.encode()):
        raise RuntimeError(f"unexpected echo reply {reply!r}")
    return elapsed * 1000.0


async def bench_one(
    workers: int,
    ws_impl: str,
    concurrency: int,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    profile: bool = False,
) -> BenchResult:
    server = Server(ws_impl, log_dir / f"rendezvous-{ws_impl}-{workers}.log", extra_env or {})
    sockets: list[ClientConnection] = []
    profiler: subprocess.Popen[bytes] | None = None
    profile_path = log_dir / f"profile-{ws_impl}-{workers}.txt"
    echo_profile_path = log_dir / f"profile-{ws_impl}-{workers}-echo.txt"
    try:
        await server.wait_ready()
        await wait_for_quiet()
        rss_idle = rss_kib(server.pid)

        # 1. connect + register
        gate = asyncio.Semaphore(concurrency)
        busy0, self0 = busy_ms(), cpu_ms(os.getpid())
        perf = _perf_record(server.pid, log_dir / f"perf-{ws_impl}-{workers}.data")
        if profile:  # the connect+register phase only
            profiler = start_profiler(server.pid, profile_path)
        user0, sys0 = cpu_times_ms(server.pid)
        cpu0 = user0 + sys0
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(*(_register(server.port, i, gate) for i in range(workers)))
        register_wall = time.perf_counter() - t0
        for sampler in (perf, profiler):
            if sampler is not None:
                sampler.send_signal(signal.SIGINT)
                sampler.wait(30)
        user1, sys1 = cpu_times_ms(server.pid)
        cpu1 = user1 + sys1
        # CPU used by anything else on the machine meanwhile: high means noisy figures.
        others = busy_ms() - busy0 - (cpu1 - cpu0) - (cpu_ms(os.getpid()) - self0)
        background = max(0.0, 100 * others / (register_wall * 1000.0))
        sockets = [ws for ws in outcomes if isinstance(ws, ClientConnection)]
        failures = [error for error in outcomes if not isinstance(error, ClientConnection)]
        if failures:
            print(f"  {len(failures)} registrations failed, e.g. {failures[0]!r}", file=sys.stderr)

        # 2. memory with every worker connected
        await asyncio.sleep(0.5)
        rss_connected = rss_kib(server.pid)

        # 3. echo, all at once
        await wait_for_quiet()
        if profile:  # and the echo burst
            profiler = start_profiler(server.pid, echo_profile_path)
        start = asyncio.Event()
        tasks = [asyncio.create_task(_echo(ws, start, i)) for i, ws in enumerate(sockets)]
        await asyncio.sleep(0)  # every task is now waiting on `start`
        cpu2 = cpu_ms(server.pid)
        t1 = time.perf_counter()
        start.set()
        latencies = sorted(await asyncio.gather(*tasks))
        echo_wall = (time.perf_counter() - t1) * 1000.0
        await asyncio.sleep(0.2)
        cpu3 = cpu_ms(server.pid)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)

        # 4. the full list (default), three times, and one page of 1000
        runs: list[float] = []
        size = 0
        for _ in range(3):
            t2 = time.perf_counter()
            status, body = await http_get(server.port, "/debug/list_workers")
            runs.append((time.perf_counter() - t2) * 1000.0)
            if status != 200:
                raise RuntimeError(f"list_workers answered {status}")
            size = len(body)
            count = json.loads(body)["connected_workers_count"]
            if count != len(sockets):
                raise RuntimeError(f"list_workers counts {count}, expected {len(sockets)}")
        t3 = time.perf_counter()
        await http_get(server.port, "/debug/list_workers?limit=1000")
        page_ms = (time.perf_counter() - t3) * 1000.0

        registered = len(sockets)
        result = BenchResult(
            workers=workers,
            ws_impl=ws_impl,
            registered=registered,
            failed=len(failures),
            register_wall_s=register_wall,
            registrations_per_s=registered / register_wall,
            cpu_ms_per_registration=(cpu1 - cpu0) / max(registered, 1),
            sys_ms_per_registration=(sys1 - sys0) / max(registered, 1),
            rss_idle_kib=rss_idle,
            rss_connected_kib=rss_connected,
            rss_kib_per_connection=(rss_connected - rss_idle) / max(registered, 1),
            echo_p50_ms=percentile(latencies, 0.50),
            echo_p99_ms=percentile(latencies, 0.99),
            echo_max_ms=latencies[-1] if latencies else float("nan"),
            echo_wall_ms=echo_wall,
            cpu_ms_per_echo=(cpu3 - cpu2) / max(registered, 1),
            list_ms=statistics.median(runs),
            list_ms_runs=runs,
            list_bytes=size,
            list_page_ms=page_ms,
            background_cpu_percent=background,
        )
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
            profiler.wait()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        server.stop()
    if profile:
        print(summarize_profile(profile_path, f"{ws_impl} N={workers} connect+register"))
        print(summarize_profile(echo_profile_path, f"{ws_impl} N={workers} echo burst"))
    result.log_lines, result.log_bytes = server.log_stats()
    return result


async def run_bench(
    workers: Sequence[int],
    ws_impls: Sequence[str],
    concurrency: int = DEFAULT_CONCURRENCY,
    log_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
    profile: bool = False,
    repeat: int = 1,
) -> list[BenchResult]:
    """Each (ws_impl, N) `repeat` times on a fresh server; the median of each figure."""
    results: list[BenchResult] = []
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hp-bench-")))
        for ws_impl in ws_impls:
            for n in workers:
                runs = []
                for run in range(repeat):
                    result = await bench_one(n, ws_impl, concurrency, log_dir, extra_env, profile)
                    if repeat > 1:
                        print_row(result, f"run {run + 1}/{repeat}")
                    runs.append(result)
                median = median_result(runs)
                results.append(median)
                print_row(median, "median" if repeat > 1 else "")
    return results


def median_result(runs: Sequence[BenchResult]) -> BenchResult:
    """Field by field median of several runs (the first run's lists and counts)."""
    if len(runs) == 1:
        return runs[0]
    merged = asdict(runs[0])
    for key, value in merged.items():
        if isinstance(value, float) and key != "list_ms":
            merged[key] = statistics.median(getattr(run, key) for run in runs)
    merged["list_ms_runs"] = [ms for run in runs for ms in run.list_ms_runs]
    merged["list_ms"] = statistics.median(merged["list_ms_runs"])
    merged["repeats"] = len(runs)
    return BenchResult(**merged)


# ------------------------------------------------------------------ profile


def _perf_record(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    """With HOLEPUNCH_BENCH_PERF=1: `perf record` the server over connect+register only."""
    if os.environ.get("HOLEPUNCH_BENCH_PERF") != "1":
        return None
    command = ["perf", "record", "-F", "1999", "-g", "-p", str(pid), "-o", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return process


def start_profiler(pid: int, path: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the server (collapsed stacks), on the load generator's core."""
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if py_spy is None:
        candidate = Path(sys.executable).with_name("py-spy")
        py_spy = str(candidate) if candidate.exists() else None
    if py_spy is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy, or set PY_SPY)")
    command = [py_spy, "record", "--pid", str(pid), "--rate", "500", "--format", "raw"]
    profiler = subprocess.Popen(
        [*command, "--output", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # let it attach before the load starts
    return profiler


def summarize_profile(path: Path, title: str, top: int = 20) -> str:
    """Top functions by self and by inclusive samples, from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short_frame(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    lines = [f"profile {title}: {total} samples ({path})", "  self%  incl%  function"]
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        share = 100 * count / max(total, 1)
        lines.append(f"  {share:5.1f}  {100 * inclusive[frame] / max(total, 1):5.1f}  {frame}")
    return "\n".join(lines)


def _short_frame(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{name} ({file})" if file else name


# ------------------------------------------------------------------ output

COLUMNS = (
    ("ws impl", "ws_impl", "{}"),
    ("N", "workers", "{}"),
    ("reg/s", "registrations_per_s", "{:.0f}"),
    ("CPU ms/reg", "cpu_ms_per_registration", "{:.3f}"),
    ("of it sys", "sys_ms_per_registration", "{:.3f}"),
    ("KiB/conn", "rss_kib_per_connection", "{:.1f}"),
    ("echo p50 ms", "echo_p50_ms", "{:.1f}"),
    ("echo p99 ms", "echo_p99_ms", "{:.1f}"),
    ("CPU ms/echo", "cpu_ms_per_echo", "{:.3f}"),
    ("list ms", "list_ms", "{:.1f}"),
    ("list KB", "list_bytes", "{:.0f}"),
    ("failed", "failed", "{}"),
    ("bg CPU%", "background_cpu_percent", "{:.0f}"),
)
WIDTHS = [max(len(title), 11) if title != "ws impl" else 18 for title, _, _ in COLUMNS]
_header_printed = False


def print_row(result: BenchResult, note: str = "") -> None:
    global _header_printed
    if not _header_printed:
        print("  ".join(title.rjust(w) for (title, _, _), w in zip(COLUMNS, WIDTHS, strict=True)))
        _header_printed = True
    values = asdict(result)
    values["list_bytes"] = values["list_bytes"] / 1000
    cells = [fmt.format(values[key]) for _, key, fmt in COLUMNS]
    line = "  ".join(cell.rjust(w) for cell, w in zip(cells, WIDTHS, strict=True))
    print(f"{line}  {note}".rstrip(), flush=True)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for the load generator too, when installed: N clients in one process cost
    less, so the echo latencies say more about the server than about the client."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_calibrated(benchmark: Coroutine[Any, Any, Sequence[Any]], json_out: Path | None) -> None:
    """Run `benchmark` (its results are dataclasses) between two readings of this machine's
    speed; print them, and write everything to `json_out` if given."""
    speed_before = calibrate_ms()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        results = runner.run(benchmark)
    speed_after = calibrate_ms()
    print(
        f"calibration: a 5M-iteration Python loop took {speed_before:.0f} ms before, "
        f"{speed_after:.0f} ms after (slower machine = higher CPU figures)"
    )
    if json_out:
        document = {
            "calibration_ms": [speed_before, speed_after],
            "results": [asdict(r) for r in results],
        }
        json_out.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="holepunch-bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workers",
        default=",".join(map(str, DEFAULT_WORKERS)),
        help="comma-separated worker counts (default %(default)s)",
    )
    parser.add_argument(
        "--ws-impl",
        default=DEFAULT_WS_IMPL,
        help="uvicorn WebSocket implementation(s), comma-separated: "
        "websockets-sansio, websockets, wsproto (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="handshakes in flight during connect+register (default %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        help="runs of each N on a fresh server; the table gives each figure's median "
        "(default %(default)s)",
    )
    parser.add_argument("--json-out", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--log-dir", type=Path, help="keep the server's log files here")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the server with py-spy (collapsed stacks in the log dir) and print the "
        "top functions; the profiler costs some CPU, so its figures are not comparable",
    )
    args = parser.parse_args(argv)
    workers = [int(n) for n in args.workers.split(",") if n.strip()]
    ws_impls = [impl.strip() for impl in args.ws_impl.split(",") if impl.strip()]

    nofile = raise_nofile()  # inherited by the server subprocess
    pin(0, LOAD_CPU)
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"rendezvous bench: server on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}, "
        f"RLIMIT_NOFILE {nofile}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load generator loop: {'uvloop' if _loop_factory() else 'asyncio'}",
        flush=True,
    )
    run_calibrated(
        run_bench(
            workers,
            ws_impls,
            args.concurrency,
            args.log_dir,
            profile=args.profile,
            repeat=args.repeat,
        ),
        args.json_out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
