"""The data plane measured (`make bench-data`, needs root).

First the yardstick, measured in the same run: aioquic alone between two loopback UDP
sockets in this process (`quic_baseline`). Then real worker processes behind the NAT
lab's NATs (`dataplane_lab`), the bench application behind each, streams opened through
the source worker's SOCKS proxy:

    nat1 eim   a (pinned to core 0)        nat2 eim   b (pinned to core 1)
    nat3 symmetric  sym                    (sym -> b: through the relay)
    nat4 eim, 25 ms each way  far-a        nat5 eim   far-b-1 .. far-b-K (50 ms RTT)
    nat6 eim, 10 % loss each way  lossy-a  nat7 eim   lossy-b
    nat8 eim   move-a                      nat9 eim   move-b (path changes forced)

Figures, each printed with the baseline where one compares:

- throughput of one stream a -> b (direct), and sym -> b (relay, against its budget);
  CPU seconds per MB of each worker;
- request/response latency on an open stream (64 bytes echoed) against the path's RTT
  (the workers' own probe RTT), on the clean path and at 50 ms;
- first byte to a new peer at 50 ms RTT: far-a opens a stream to each far-b-i it never
  met (introduction, punch, QUIC handshake, stream accepted, one echo), in RTTs;
- memory per idle peer connection: far-a's RSS after K connections against after one;
- integrity: a transfer at 10 % loss, and one across a forced relay -> direct change
  (UDP between nat8 and nat9 blocked, then unblocked mid-transfer: the upgrade) and one
  across direct -> relay (blocked again mid-transfer), each byte-exact by SHA-256.

Sizes are flags; `--quick` makes every one small (the smoke test). Results can also be
written as JSON (`--json`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from holepunch_devtools.bench_app import ECHO, echo_round_trips
from holepunch_devtools.dataplane_lab import DataLab, TransferResult, WorkerPlan
from holepunch_devtools.natlab import Impairment, LabSpec, NatKind, NatSpec, remove_stale_labs
from holepunch_devtools.quic_baseline import BaselineResult, run_baseline

__all__ = ["BenchSizes", "lab_plans", "lab_spec", "main", "run"]

MB = 1_000_000
FAR_DELAY_MS = 25
LOSS_PCT = 10.0
RELAY_BUDGET_BYTES_PER_SEC = 65536  # the rendezvous' RELAY_BYTES_PER_SEC default
# Relayed sessions try a direct path this often (default 20 s): the upgrade comes sooner.
# A dead path is noticed within seconds (keepalive 1 s, idle 5 s), not 45 s.
MOVE_ENV = {
    "PUNCH_DEADLINE_SEC": "2",
    "PUNCH_UPGRADE_INTERVAL_SEC": "2",
    "PUNCH_KEEPALIVE_SEC": "1",
    "PUNCH_IDLE_TIMEOUT_SEC": "5",
}


@dataclass(frozen=True, slots=True)
class BenchSizes:
    direct_mb: float = 100.0
    relay_mb: float = 2.0
    loss_mb: float = 100.0
    change_mb: float = 4.0
    latency_count: int = 200
    new_peers: int = 10

    @classmethod
    def quick(cls) -> BenchSizes:
        return cls(direct_mb=2, relay_mb=0.2, loss_mb=1, change_mb=2, latency_count=20, new_peers=3)


def lab_spec() -> LabSpec:
    eim = NatSpec(NatKind.EIM)
    return LabSpec(
        nats=(
            eim,
            eim,
            NatSpec(NatKind.SYMMETRIC),
            NatSpec(NatKind.EIM, impairment=Impairment(delay_ms=FAR_DELAY_MS)),
            eim,
            NatSpec(NatKind.EIM, impairment=Impairment(loss_pct=LOSS_PCT)),
            eim,
            eim,
            eim,
        )
    )


def lab_plans(new_peers: int) -> list[WorkerPlan]:
    return [
        WorkerPlan("a", 1, socks=True, core=0),
        WorkerPlan("b", 2, core=1),
        WorkerPlan("sym", 3, socks=True),
        WorkerPlan("far-a", 4, socks=True),
        *(WorkerPlan(f"far-b-{i}", 5) for i in range(1, new_peers + 1)),
        WorkerPlan("lossy-a", 6, socks=True),
        WorkerPlan("lossy-b", 7),
        WorkerPlan("move-a", 8, socks=True, env=MOVE_ENV),
        WorkerPlan("move-b", 9, env=MOVE_ENV),
    ]


@dataclass
class Figures:
    """Everything measured, as printed and as written to JSON."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)  # figure, value, comparison
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: str, value: str, comparison: str = "", **data: Any) -> None:
        self.rows.append((figure, value, comparison))
        self.data[figure] = data
        print(f"  {figure}: {value}  {comparison}".rstrip(), flush=True)

    def table(self) -> str:
        header = ("figure", "value", "against")
        widths = [max(len(row[i]) for row in [header, *self.rows]) for i in range(3)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                 for row in [header, *self.rows]]  # fmt: skip
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


async def _path_rtt(lab: DataLab, source: str, peer: str) -> float:
    """The median of the workers' own echo round trips on the session's path, seconds."""
    return _median(await lab.echo_rtts(source, peer))


def _throughput(
    figures: Figures, name: str, result: TransferResult, baseline: BaselineResult, workers: str
) -> None:
    ratio = result.mbit_per_sec / baseline.mbit_per_sec
    figures.add(
        f"{name} throughput",
        f"{result.mbit_per_sec:.1f} Mbit/s ({result.size / MB:g} MB, sha256 "
        f"{'equal' if result.intact else 'DIFFERENT'})",
        f"baseline {baseline.mbit_per_sec:.1f} Mbit/s: ratio {ratio:.2f}",
        mbit_per_sec=result.mbit_per_sec,
        ratio=ratio,
        intact=result.intact,
        seconds=result.seconds,
    )
    for worker in workers.split(","):
        figures.add(
            f"{name} CPU per MB, worker {worker}",
            f"{result.cpu_per_mb(worker) * 1000:.1f} ms",
            f"baseline (both ends, one process) {baseline.cpu_seconds_per_mb * 1000:.1f} ms",
            cpu_seconds_per_mb=result.cpu_per_mb(worker),
        )


async def _latency(
    lab: DataLab,
    figures: Figures,
    name: str,
    source: str,
    peer: str,
    count: int,
    baseline: BaselineResult,
) -> None:
    reader, writer = await lab.open_stream(source, peer)
    try:
        await echo_round_trips(reader, writer, 5)  # warm: windows, caches
        round_trips = await echo_round_trips(reader, writer, count, started=True)
    finally:
        writer.close()
    rtt = await _path_rtt(lab, source, peer)
    median = _median(round_trips)
    figures.add(
        f"{name} request/response, median of {count}",
        _ms(median),
        f"path RTT {_ms(rtt)}: {_ms(median - rtt)} above it "
        f"(aioquic alone on loopback: {_ms(baseline.request_response_sec)})",
        median_sec=median,
        p90_sec=statistics.quantiles(round_trips, n=10)[-1],
        path_rtt_sec=rtt,
    )


async def _first_bytes(lab: DataLab, figures: Figures, count: int) -> None:
    """far-a to each far-b-i it never met: from the SOCKS request (the application's
    connect) to its first byte arriving at the application behind the peer, which it
    sends as soon as the proxy says the stream is open."""
    accepted: list[float] = []
    first_byte: list[float] = []
    rss: list[int] = []
    for i in range(1, count + 1):
        peer = f"far-b-{i}"
        while not lab.app.first_bytes.empty():
            lab.app.first_bytes.get_nowait()
        started = time.perf_counter()
        reader, writer = await lab.open_stream("far-a", peer)
        accepted.append(time.perf_counter() - started)
        writer.write(ECHO + b"!")
        first_byte.append(await asyncio.wait_for(lab.app.first_bytes.get(), 30) - started)
        await reader.readexactly(1)
        writer.close()
        rss.append(lab.rss_bytes("far-a"))
    rtts = [await _path_rtt(lab, "far-a", f"far-b-{i}") for i in range(1, count + 1)]
    rtt = _median(rtts)
    in_rtts = [t / r for t, r in zip(first_byte, rtts, strict=True)]
    figures.add(
        f"first byte to a new peer at {2 * FAR_DELAY_MS} ms RTT, median of {count}",
        f"{_median(in_rtts):.2f} RTT ({_ms(_median(first_byte))})",
        f"the SOCKS success after {_median(accepted) / rtt:.2f} RTT; path RTT {_ms(rtt)}",
        first_byte_rtts=in_rtts,
        accepted_sec=accepted,
        path_rtt_sec=rtts,
    )
    if count >= 2:
        per_connection = (rss[-1] - rss[0]) / (count - 1)
        figures.add(
            "memory per idle peer connection",
            f"{per_connection / 1024:.0f} KiB",
            f"far-a RSS {rss[0] / 2**20:.1f} MiB with 1, {rss[-1] / 2**20:.1f} MiB with {count}",
            bytes_per_connection=per_connection,
            rss=rss,
        )


async def _relay_to_direct(lab: DataLab, figures: Figures, sizes: BenchSizes) -> None:
    """UDP between nat8 and nat9 blocked: the session starts relayed; unblocked a quarter
    into the transfer, the relayed session's upgrade burst finds the direct path."""
    size = int(sizes.change_mb * MB)
    lab.block_udp(8, 9)
    _, writer = await lab.open_stream("move-a", "move-b")
    writer.close()
    before = await lab.path("move-a", "move-b")
    result = await lab.transfer_with_action(
        "move-a", "move-b", size, 0.25, lambda: lab.unblock_udp(8, 9)
    )
    after = await lab.path("move-a", "move-b")
    upgrades = len(lab.workers["move-a"].events("relay_upgraded"))
    figures.add(
        "relay -> direct mid-transfer",
        f"sha256 {'equal' if result.intact else 'DIFFERENT'} ({size / MB:g} MB)",
        f"path {before} -> {after}, {upgrades} relay_upgraded",
        intact=result.intact,
        path_before=before,
        path_after=after,
    )


async def _direct_to_relay(lab: DataLab, figures: Figures, sizes: BenchSizes) -> None:
    """The direct path blocked half-way into the transfer: on to the relay. (Later, the
    rest of a small transfer can arrive before the rule is in place.)"""
    size = int(sizes.change_mb * MB)
    lab.unblock_udp(8, 9)
    before = await lab.path("move-a", "move-b")
    try:
        result = await lab.transfer_with_action(
            "move-a", "move-b", size, 0.5, lambda: lab.block_udp(8, 9), timeout=300
        )
    finally:
        lab.unblock_udp(8, 9)
    after = await lab.path("move-a", "move-b")
    figures.add(
        "direct -> relay mid-transfer",
        f"sha256 {'equal' if result.intact else 'DIFFERENT'} ({size / MB:g} MB)",
        f"path {before} -> {after}",
        intact=result.intact,
        path_before=before,
        path_after=after,
    )


async def run(sizes: BenchSizes, state_root: Path | None = None) -> Figures:
    figures = Figures()
    print(f"baseline: aioquic between two loopback sockets, {sizes.direct_mb:g} MB ...")
    baseline = await run_baseline(int(sizes.direct_mb * MB))
    figures.add(
        "baseline (aioquic, loopback, one process)",
        f"{baseline.mbit_per_sec:.1f} Mbit/s",
        f"{baseline.cpu_seconds_per_mb * 1000:.1f} ms CPU per MB, request/response "
        f"{_ms(baseline.request_response_sec)}",
        mbit_per_sec=baseline.mbit_per_sec,
        request_response_sec=baseline.request_response_sec,
        cpu_seconds_per_mb=baseline.cpu_seconds_per_mb,
    )
    print("starting the NAT lab and its workers ...", flush=True)
    remove_stale_labs()
    lab = await DataLab.start(lab_spec(), lab_plans(sizes.new_peers), state_root)
    try:
        await _scenarios(lab, figures, sizes, baseline)
    finally:
        await lab.stop()
    return figures


async def _scenarios(
    lab: DataLab, figures: Figures, sizes: BenchSizes, baseline: BaselineResult
) -> None:
    """Each scenario in turn; one that fails is reported as such and the rest still run."""
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("direct (eim <-> eim) throughput", lambda: _direct(lab, figures, sizes, baseline)),
        ("relay (symmetric -> eim) throughput", lambda: _relay(lab, figures, sizes)),
        (
            "clean path request/response",
            lambda: _latency(lab, figures, "clean path", "a", "b", sizes.latency_count, baseline),
        ),
        ("first byte to a new peer", lambda: _first_bytes(lab, figures, sizes.new_peers)),
        (
            f"{2 * FAR_DELAY_MS} ms path request/response",
            lambda: _latency(
                lab,
                figures,
                f"{2 * FAR_DELAY_MS} ms path",
                "far-a",
                "far-b-1",
                sizes.latency_count,
                baseline,
            ),
        ),
        (f"{LOSS_PCT:g} % loss each way", lambda: _lossy(lab, figures, sizes)),
        ("relay -> direct mid-transfer", lambda: _relay_to_direct(lab, figures, sizes)),
        ("direct -> relay mid-transfer", lambda: _direct_to_relay(lab, figures, sizes)),
    ]
    for name, step in steps:
        try:
            await step()
        except (OSError, RuntimeError, AssertionError, TimeoutError, ValueError) as error:
            figures.add(name, "FAILED", f"{type(error).__name__}: {error}", failed=True)
        except asyncio.IncompleteReadError as error:
            figures.add(
                name, "FAILED", f"stream ended early ({len(error.partial)} bytes)", failed=True
            )


async def _direct(
    lab: DataLab, figures: Figures, sizes: BenchSizes, baseline: BaselineResult
) -> None:
    result = await lab.transfer("a", "b", int(sizes.direct_mb * MB))
    _throughput(figures, "direct (eim <-> eim)", result, baseline, "a,b")


async def _relay(lab: DataLab, figures: Figures, sizes: BenchSizes) -> None:
    result = await lab.transfer("sym", "b", int(sizes.relay_mb * MB))
    budget = RELAY_BUDGET_BYTES_PER_SEC * 8 / 1e6
    figures.add(
        "relay (symmetric -> eim) throughput",
        f"{result.mbit_per_sec:.3f} Mbit/s ({sizes.relay_mb:g} MB, sha256 "
        f"{'equal' if result.intact else 'DIFFERENT'})",
        f"relay budget {budget:.3f} Mbit/s per session: {result.mbit_per_sec / budget:.2f}",
        mbit_per_sec=result.mbit_per_sec,
        intact=result.intact,
    )


async def _lossy(lab: DataLab, figures: Figures, sizes: BenchSizes) -> None:
    result = await lab.transfer("lossy-a", "lossy-b", int(sizes.loss_mb * MB))
    figures.add(
        f"{LOSS_PCT:g} % loss each way",
        f"sha256 {'equal' if result.intact else 'DIFFERENT'} ({sizes.loss_mb:g} MB)",
        f"{result.mbit_per_sec:.1f} Mbit/s",
        intact=result.intact,
        mbit_per_sec=result.mbit_per_sec,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m holepunch_devtools.data_bench", description=__doc__.split("\n")[0]
    )
    default = BenchSizes()
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--direct-mb", type=float, help=f"default {default.direct_mb:g}")
    parser.add_argument("--relay-mb", type=float, help=f"default {default.relay_mb:g}")
    parser.add_argument("--loss-mb", type=float, help=f"default {default.loss_mb:g}")
    parser.add_argument("--change-mb", type=float, help=f"default {default.change_mb:g}")
    parser.add_argument("--latency-count", type=int, help=f"default {default.latency_count}")
    parser.add_argument(
        "--new-peers", type=int, help=f"first-byte samples (default {default.new_peers})"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    sizes = BenchSizes.quick() if args.quick else default
    overrides = {
        name: value
        for name in ("direct_mb", "relay_mb", "loss_mb", "change_mb", "latency_count", "new_peers")
        if (value := getattr(args, name)) is not None
    }
    sizes = replace(sizes, **overrides)
    if sizes.new_peers < 1 or sizes.latency_count < 2:
        parser.error("--new-peers must be at least 1, --latency-count at least 2")
    figures = asyncio.run(run(sizes))
    print("\n" + figures.table())
    if args.json is not None:
        args.json.write_text(json.dumps({"sizes": asdict(sizes), **figures.data}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
