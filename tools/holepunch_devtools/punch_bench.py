"""Hole punching measured in the NAT lab (needs root): `python -m holepunch_devtools.punch_bench`.

One lab (docs/natlab.md) with a worker behind each NAT:

    nat1 eim, nat2 eim              clean, "eim-eim"
    nat3 symmetric                  with nat2: "symmetric-eim" (relay when needed)
    nat4 fullcone                   with nat3: "symmetric-fullcone" (peer-reflexive)
    nat5 eim + impairment, nat6 eim "eim-eim-impaired": nat5's wan link alone gets D ms
                                    each way and P % loss each way (default 25 ms, 10 %),
                                    so the path between the two peers has a 2D ms round
                                    trip and P % loss in each direction

For each scenario it introduces the same two workers `--count` times through the
rendezvous (`POST /admin/introduce`, the initiator first), one at a time. Every
introduction is a new session (new id and secret; the workers end the previous one as
"replaced"), and before each the two NATs forget the punched flows between them
(`conntrack -D` towards the other NAT's address), so no session inherits the previous
one's open path: the STUN and WebSocket flows stay, so an EIM NAT keeps its public port
and the registered endpoint stays right.

Per introduction it records both workers' `punch_result` from `/debug/sessions`
(status, path, elapsed_ms, rtt_ms), an echo from the initiator (`POST /peers/{id}/echo`:
path), and, from packet captures with kernel timestamps (AF_PACKET sockets on the
rendezvous' bridge and on each host's eth0):

- t_intro: the rendezvous sends the first of the two `peer_introduction` frames (the
  TCP segment leaves its socket on the public bridge);
- t_first(w): the first datagram of that session, authentic under the session secret
  (read from the introduction frame), arriving on worker w's host after w's own
  introduction arrived (before that the worker could not have accepted it).

"time to first datagram" is max over both workers of t_first(w) - t_intro: the moment
both sides have heard from the other directly. The RTT it is divided by is the median of
the probe round-trip times the workers reported (`rtt_ms`, worker to worker through both
NATs, i.e. between the NATs' public sides plus the sub-millisecond LAN hops).

Figures are printed, not asserted (docs/punching-lab.md has a run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import select
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from holepunch_logging import WorkerEvent
from holepunch_protocol import open_peer_datagram, peek_session_id
from holepunch_worker.punch import PunchTimings

from holepunch_devtools.natlab import (
    RENDEZVOUS_PORT,
    Impairment,
    Lab,
    LabError,
    LabSpec,
    NatKind,
    NatSpec,
    host_ip,
    netns_socket,
    new_prefix,
    remove_stale_labs,
    start_service_in_namespace,
    wan_ip,
)
from holepunch_devtools.processes import ServiceProcess

__all__ = [
    "WORKERS",
    "Capture",
    "CapturedPacket",
    "Scenario",
    "introduction_secrets",
    "lab_spec",
    "main",
    "parse_ipv4",
    "session_timeline",
    "wait_registered",
]

_ETH_P_ALL = 0x0003  # outgoing packets reach only ETH_P_ALL taps (dev_queue_xmit_nit)
_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_SESSION_ID = re.compile(rb'"session_id":\s*"([0-9a-f]{32})"')
_SECRET = re.compile(rb'"secret":\s*"([0-9a-f]{64})"')
_INTRODUCTION = b'"peer_introduction"'

SETTLE_TIMEOUT_SEC = 15.0
ECHO_ATTEMPTS = 3
POLL_SEC = 0.05  # /debug/sessions poll interval, bounded by SETTLE_TIMEOUT_SEC


# ---------------------------------------------------------------------- captures


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    at: float  # kernel receive/send timestamp, CLOCK_REALTIME seconds
    outgoing: bool
    protocol: int  # 6 TCP, 17 UDP
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def parse_ipv4(packet: bytes) -> tuple[int, str, int, str, int, bytes] | None:
    """(protocol, src, sport, dst, dport, payload) of a TCP or UDP IPv4 packet."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    total = struct.unpack("!H", packet[2:4])[0]
    protocol = packet[9]
    src, dst = socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])
    body = packet[header:total]
    if protocol == 17 and len(body) >= 8:
        sport, dport = struct.unpack("!HH", body[:4])
        return protocol, src, sport, dst, dport, body[8:]
    if protocol == 6 and len(body) >= 20:
        sport, dport = struct.unpack("!HH", body[:4])
        offset = (body[12] >> 4) * 4
        return protocol, src, sport, dst, dport, body[offset:]
    return None


class Capture:
    """IPv4 packets on one interface of a namespace, with kernel timestamps: every UDP
    datagram, and TCP segments carrying a `peer_introduction` frame."""

    def __init__(self, namespace: str, interface: str) -> None:
        self.name = f"{namespace}/{interface}"
        self.packets: list[CapturedPacket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = netns_socket(
            namespace, socket.SOCK_DGRAM, socket.AF_PACKET, socket.htons(_ETH_P_ALL)
        )
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self._sock.bind((interface, _ETH_P_ALL))
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.2)
            if not ready:
                continue
            try:
                data, ancillary, _flags, address = self._sock.recvmsg(65535, 256)
            except OSError:
                return
            at = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    at = seconds + nanoseconds / 1e9
            parsed = parse_ipv4(data) if address[1] == _ETH_P_IP else None
            if parsed is None:
                continue
            protocol, src, sport, dst, dport, payload = parsed
            if protocol == 6 and _INTRODUCTION not in payload:
                continue
            packet = CapturedPacket(
                at, address[2] == _PACKET_OUTGOING, protocol, src, sport, dst, dport, payload
            )
            with self._lock:
                self.packets.append(packet)

    def snapshot(self) -> list[CapturedPacket]:
        with self._lock:
            return list(self.packets)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


def introduction_secrets(packets: Sequence[CapturedPacket]) -> dict[str, bytes]:
    """session id (hex) -> secret, from captured peer_introduction frames."""
    secrets: dict[str, bytes] = {}
    for packet in packets:
        if packet.protocol != 6:
            continue
        session, secret = _SESSION_ID.search(packet.payload), _SECRET.search(packet.payload)
        if session and secret:
            secrets[session[1].decode()] = bytes.fromhex(secret[1].decode())
    return secrets


def _introductions(packets: Sequence[CapturedPacket], session_id: str) -> list[CapturedPacket]:
    return [
        p
        for p in packets
        if p.protocol == 6
        and p.sport == RENDEZVOUS_PORT
        and (found := _SESSION_ID.search(p.payload)) is not None
        and found[1].decode() == session_id
    ]


def session_timeline(
    session_id: str,
    secret: bytes,
    public: Sequence[CapturedPacket],
    hosts: Mapping[str, Sequence[CapturedPacket]],
) -> dict[str, Any]:
    """When the rendezvous sent the introduction (`public`: the bridge), and per host
    (name -> its eth0 packets) when the introduction and the first authentic datagram of
    the session arrived, in seconds after the introduction was sent (None: not seen)."""
    sent = [p.at for p in _introductions(public, session_id) if p.outgoing]
    if not sent:
        return {"intro_sent": None}
    t_intro = min(sent)
    key = bytes.fromhex(session_id)
    timeline: dict[str, Any] = {"intro_sent": t_intro}
    for name, packets in hosts.items():
        arrived = [p.at for p in _introductions(packets, session_id) if not p.outgoing]
        intro_at = min(arrived) if arrived else None
        first = None
        if intro_at is not None:
            for p in packets:
                if (
                    p.protocol == 17
                    and not p.outgoing
                    and p.at >= intro_at
                    and peek_session_id(p.payload) == key
                    and open_peer_datagram(secret, p.payload) is not None
                ):
                    first = p.at if first is None else min(first, p.at)
        timeline[name] = {
            "intro_ms": None if intro_at is None else (intro_at - t_intro) * 1000,
            "first_datagram_ms": None if first is None else (first - t_intro) * 1000,
        }
    return timeline


# ---------------------------------------------------------------------- scenarios


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    initiator: int  # NAT / host index
    responder: int
    relay_expected: bool  # False: a direct path is the expected outcome


@dataclass
class Sample:
    session_id: str
    results: dict[str, dict[str, Any]]
    echo: dict[str, Any]
    timeline: dict[str, Any] = field(default_factory=dict)
    settle_ms: float = 0.0


WORKERS = {
    1: "eim-a",
    2: "eim-b",
    3: "sym",
    4: "cone",
    5: "lossy-a",
    6: "lossy-b",
}
SCENARIOS = (
    Scenario("eim-eim", 1, 2, relay_expected=False),
    Scenario("eim-eim-impaired", 5, 6, relay_expected=False),
    Scenario("symmetric-eim", 3, 2, relay_expected=True),
    Scenario("symmetric-fullcone", 3, 4, relay_expected=False),
)


def lab_spec(impairment: Impairment) -> LabSpec:
    return LabSpec(
        nats=(
            NatSpec(NatKind.EIM),
            NatSpec(NatKind.EIM),
            NatSpec(NatKind.SYMMETRIC),
            NatSpec(NatKind.FULL_CONE),
            NatSpec(NatKind.EIM, impairment=impairment),
            NatSpec(NatKind.EIM),
        )
    )


def _settled(result: dict[str, Any] | None, relay_ok: bool) -> bool:
    if result is None:
        return False
    if result["status"] == "connected":
        return True
    return relay_ok and result["status"] == "relayed"


async def introduce_once(
    lab: Lab,
    scenario: Scenario,
    punch_deadline_sec: float,
) -> Sample:
    a, b = scenario.initiator, scenario.responder
    id_a, id_b = WORKERS[a], WORKERS[b]
    # Independent sessions: neither NAT still holds the previous session's punched flow.
    await asyncio.to_thread(lab.forget_flows, a, wan_ip(b))
    await asyncio.to_thread(lab.forget_flows, b, wan_ip(a))
    loop = asyncio.get_running_loop()
    started = loop.time()
    session_id = await asyncio.to_thread(lab.introduce, id_a, id_b)
    results: dict[str, dict[str, Any]] = {}
    while loop.time() - started < SETTLE_TIMEOUT_SEC:
        session = (await asyncio.to_thread(lab.punch_sessions)).get(session_id, {})
        results = session.get("results", {})
        # A direct path is waited for until the punch deadline has passed; after it (or
        # where the relay is expected) a relayed result counts as the outcome.
        relay_ok = scenario.relay_expected or loop.time() - started > punch_deadline_sec + 1
        if all(_settled(results.get(w), relay_ok) for w in (id_a, id_b)):
            break
        await asyncio.sleep(POLL_SEC)
    settle_ms = (loop.time() - started) * 1000
    echo: dict[str, Any] = {}
    for attempt in range(1, ECHO_ATTEMPTS + 1):
        # One echo request, one reply, no retransmission in the worker: on a lossy path
        # an echo can time out (504), so it is asked again.
        status, body = await asyncio.to_thread(lab.worker_request, a, "POST", f"/peers/{id_b}/echo")
        echo = body if status == 200 and isinstance(body, dict) else {"error": status}
        echo["attempts"] = attempt
        if status == 200:
            break
    return Sample(session_id, results, echo, settle_ms=settle_ms)


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summarise(scenario: Scenario, samples: Sequence[Sample]) -> dict[str, Any]:
    ids = (WORKERS[scenario.initiator], WORKERS[scenario.responder])
    outcomes = {"direct": 0, "relayed": 0, "failed_or_missing": 0}
    peer_reflexive = 0
    rtts: list[float] = []
    elapsed: list[float] = []
    for sample in samples:
        results = [sample.results.get(w) for w in ids]
        if all(r and r["status"] == "connected" and r["path"] == "direct" for r in results):
            outcomes["direct"] += 1
        elif all(r and r["status"] in ("connected", "relayed") for r in results):
            outcomes["relayed"] += 1
        else:
            outcomes["failed_or_missing"] += 1
        for r in results:
            if r and r.get("rtt_ms") is not None and r["path"] == "direct":
                rtts.append(float(r["rtt_ms"]))
            if r and r["status"] == "connected":
                elapsed.append(float(r["elapsed_ms"]))
        responder = sample.results.get(ids[1])
        introduced = sample.timeline.get("introduced_initiator_port")
        if responder and introduced and responder.get("peer_udp_port") not in (None, introduced):
            peer_reflexive += 1
    echoes: dict[str, int] = {}
    echo_retried = 0
    for sample in samples:
        path = str(sample.echo.get("path", f"error {sample.echo.get('error')}"))
        echoes[path] = echoes.get(path, 0) + 1
        echo_retried += sample.echo.get("attempts", 1) > 1
    both = [
        max(sample.timeline[h]["first_datagram_ms"] for h in ("a", "b"))
        for sample in samples
        if all((sample.timeline.get(h) or {}).get("first_datagram_ms") is not None for h in "ab")
    ]
    either = [
        min(
            sample.timeline[h]["first_datagram_ms"]
            for h in ("a", "b")
            if (sample.timeline.get(h) or {}).get("first_datagram_ms") is not None
        )
        for sample in samples
        if any((sample.timeline.get(h) or {}).get("first_datagram_ms") is not None for h in "ab")
    ]
    # The same, from the moment the later of the two introductions arrived: the punching
    # alone, without the introduction's own delivery (TCP retransmits a lost segment
    # only after its ~200 ms minimum RTO).
    after_intro = [
        max(sample.timeline[h]["first_datagram_ms"] for h in ("a", "b"))
        - max(sample.timeline[h]["intro_ms"] for h in ("a", "b"))
        for sample in samples
        if all((sample.timeline.get(h) or {}).get("first_datagram_ms") is not None for h in "ab")
    ]
    rtt = statistics.median(rtts) if rtts else None
    late_introductions = (
        0
        if rtt is None
        else sum(
            1
            for sample in samples
            if any(((sample.timeline.get(h) or {}).get("intro_ms") or 0) > rtt for h in ("a", "b"))
        )
    )
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "initiator": ids[0],
        "responder": ids[1],
        "introductions": len(samples),
        "distinct_sessions": len({s.session_id for s in samples}),
        "outcomes": outcomes,
        "responder_used_peer_reflexive": peer_reflexive,
        "echo_paths": echoes,
        "echo_retried": echo_retried,
        "rtt_ms_median": rtt,
        "punch_connected_elapsed_ms_median": statistics.median(elapsed) if elapsed else None,
        "introductions_later_than_1_rtt": late_introductions,
    }
    for label, values in (
        ("first_datagram_both_ms", both),
        ("first_datagram_either_ms", either),
        ("first_datagram_both_after_later_intro_ms", after_intro),
    ):
        if not values:
            summary[label] = None
            continue
        entry: dict[str, Any] = {
            "n": len(values),
            "median": statistics.median(values),
            "p90": _percentile(values, 0.9),
            "max": max(values),
        }
        if rtt:
            entry["median_rtt"] = entry["median"] / rtt
            entry["p90_rtt"] = entry["p90"] / rtt
            entry["under_2_rtt"] = sum(1 for v in values if v < 2 * rtt)
        summary[label] = entry
    return summary


def _format(summary: dict[str, Any]) -> str:
    o = summary["outcomes"]
    lines = [
        f"{summary['scenario']} ({summary['initiator']} -> {summary['responder']}): "
        f"{summary['introductions']} introductions, {summary['distinct_sessions']} sessions; "
        f"direct {o['direct']}, relayed {o['relayed']}, failed {o['failed_or_missing']}; "
        f"echo paths {summary['echo_paths']} ({summary['echo_retried']} needed a retry)",
    ]
    if summary["responder_used_peer_reflexive"]:
        lines.append(
            f"  responder answered a peer-reflexive address in "
            f"{summary['responder_used_peer_reflexive']} sessions"
        )
    rtt = summary["rtt_ms_median"]
    if rtt is not None:
        lines.append(
            f"  probe RTT median {rtt:.2f} ms; an introduction reached a worker more than "
            f"1 RTT after it was sent in {summary['introductions_later_than_1_rtt']} sessions"
        )
    if summary["punch_connected_elapsed_ms_median"] is not None:
        lines.append(
            "  punch_result elapsed_ms (worker's introduction -> report) median "
            f"{summary['punch_connected_elapsed_ms_median']:.1f} ms"
        )
    for label, text in (
        ("first_datagram_both_ms", "introduction sent -> both sides got a datagram"),
        ("first_datagram_either_ms", "introduction sent -> first side got a datagram"),
        (
            "first_datagram_both_after_later_intro_ms",
            "later introduction arrived -> both sides got a datagram",
        ),
    ):
        entry = summary.get(label)
        if not entry:
            continue
        line = (
            f"  {text}: median {entry['median']:.1f} ms, p90 {entry['p90']:.1f}, "
            f"max {entry['max']:.1f} (n={entry['n']})"
        )
        if "median_rtt" in entry:
            line += (
                f"; {entry['median_rtt']:.2f} RTT median, {entry['p90_rtt']:.2f} p90, "
                f"{entry['under_2_rtt']}/{entry['n']} under 2 RTT"
            )
        lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------- the run


async def wait_registered(lab: Lab, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """The registry once every worker of `WORKERS` holds its NAT's address and mapping."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with contextlib.suppress(OSError, LabError, ValueError):
            workers = await asyncio.to_thread(lab.list_workers)
            if all(
                (workers.get(w) or {}).get("stun_reported_udp_ip") == wan_ip(i)
                and (workers.get(w) or {}).get("nat_mapping") == lab.nat(i).kind.expected_mapping
                for i, w in WORKERS.items()
            ):
                return workers
        if loop.time() > deadline:
            raise LabError(f"workers not registered within {timeout} s")
        await asyncio.sleep(0.2)  # polling the registry, bounded by the deadline


async def run(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    impairment = Impairment(arguments.delay_ms, arguments.loss_pct)
    remove_stale_labs()
    lab = Lab.create(lab_spec(impairment), new_prefix())
    workers: list[ServiceProcess] = []
    captures: dict[str, Capture] = {}
    summaries: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(lab.up)
        env = {"LOG_LEVEL": "INFO", "PUNCH_DEADLINE_SEC": str(arguments.punch_deadline)}
        for index, worker_id in WORKERS.items():
            workers.append(
                await start_service_in_namespace(
                    lab.ns(f"host{index}"),
                    "holepunch_worker",
                    lab.worker_env(WORKER_ID=worker_id, **env),
                )
            )
        registry = await wait_registered(lab)
        captures["pub"] = Capture(lab.ns("pub"), "br0")
        for index in WORKERS:
            captures[f"host{index}"] = Capture(lab.ns(f"host{index}"), "eth0")
        print(
            f"lab {lab.prefix}: impairment backend {lab.impairment_backend}; nat5 wan "
            f"{impairment.delay_ms} ms and {impairment.loss_pct:g} % loss each way",
            file=sys.stderr,
        )
        chosen = [s for s in SCENARIOS if not arguments.scenario or s.name in arguments.scenario]
        for scenario in chosen:
            samples = []
            for _ in range(arguments.count):
                sample = await introduce_once(lab, scenario, arguments.punch_deadline)
                samples.append(sample)
            await asyncio.sleep(0.2)  # let the last captured packets be read
            public = captures["pub"].snapshot()
            secrets = introduction_secrets(public)
            hosts = {
                "a": captures[f"host{scenario.initiator}"].snapshot(),
                "b": captures[f"host{scenario.responder}"].snapshot(),
            }
            initiator = registry[WORKERS[scenario.initiator]]
            for sample in samples:
                secret = secrets.get(sample.session_id)
                if secret is not None:
                    sample.timeline = session_timeline(sample.session_id, secret, public, hosts)
                sample.timeline["introduced_initiator_port"] = initiator["stun_reported_udp_port"]
            summary = summarise(scenario, samples)
            summary["samples"] = [
                {
                    "session_id": s.session_id,
                    "results": s.results,
                    "echo": s.echo,
                    "timeline": s.timeline,
                    "settle_ms": round(s.settle_ms, 1),
                }
                for s in samples
            ]
            summary["replaced_sessions"] = sum(
                1
                for worker in workers
                for line in worker.events(WorkerEvent.PUNCH_SESSION_ENDED)
                if line.get("reason") == "replaced"
                and line.get("session_id") in {s.session_id for s in samples}
            )
            summaries.append(summary)
            print(_format(summary), flush=True)
        summaries.append(
            {
                "impairment": {"delay_ms": impairment.delay_ms, "loss_pct": impairment.loss_pct},
                "impairment_backend": lab.impairment_backend,
                "hosts": {WORKERS[i]: host_ip(i) for i in WORKERS},
            }
        )
    finally:
        for capture in captures.values():
            capture.close()
        for worker in workers:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await worker.stop(timeout=5)
        await asyncio.to_thread(lab.down)
    return summaries


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="punch_bench",
        description="Hole punching in the NAT lab: introductions, outcomes, time to the "
        "first datagram (root; see docs/punching-lab.md).",
    )
    parser.add_argument("--count", type=int, default=50, help="introductions per scenario")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.name for s in SCENARIOS],
        help="run only this scenario (repeat; default: all)",
    )
    parser.add_argument("--delay-ms", type=int, default=25, help="nat5's delay each way")
    parser.add_argument("--loss-pct", type=float, default=10.0, help="nat5's loss each way")
    parser.add_argument(
        "--punch-deadline",
        type=float,
        default=PunchTimings().deadline,
        help="the workers' PUNCH_DEADLINE_SEC",
    )
    parser.add_argument("--json-out", type=Path, help="also write every sample as JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if os.geteuid() != 0:
        print("punch_bench: needs root (the NAT lab)", file=sys.stderr)
        return 1
    try:
        summaries = asyncio.run(run(arguments))
    except LabError as error:
        print(f"punch_bench: {error}", file=sys.stderr)
        return 1
    if arguments.json_out is not None:
        arguments.json_out.write_text(json.dumps(summaries, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
