"""Issue 11's reflection scenario, measured: `python -m holepunch_devtools.reflection_bench`.

A rendezvous and a victim worker run as processes (as their containers start them), on
loopback; a third party is a UDP socket here that counts what reaches it. `--attackers`
WebSocket clients each register the third party's address as their UDP endpoint and ask
to be introduced to the victim `--rate` times a second (staggered) for `--seconds`. The
figure is how many datagrams (and bytes) reached the third party over that window, and
what the rendezvous answered the attackers.

The defaults are the issue's run: 200 attackers at 0.25 requests/s for 20 s, which made
the victim send the third party 25,529 datagrams (1.35 MB) before the caps and budgets.
`--source-root DIR` runs the services from another checkout (e.g. a worktree of an older
commit) with this same driver, for a before/after in one sitting. Nothing is asserted;
tests/integration/test_rendezvous_attacks.py asserts the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from holepunch_devtools.processes import ServiceProcess, start_service
from holepunch_devtools.stun_server import start_stun_server

__all__ = ["main", "run"]

VICTIM = "victim"
SOURCE_DIRS = ("libs", "services/rendezvous", "services/worker", "tools")


class _ThirdParty(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams = 0
        self.bytes = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams += 1
        self.bytes += len(data)


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _source_env(source_root: Path | None) -> dict[str, str]:
    if source_root is None:
        return {}
    return {"PYTHONPATH": ":".join(str(source_root / d) for d in SOURCE_DIRS)}


async def _attack(
    url: str,
    attacker_id: str,
    endpoint: tuple[str, int],
    interval: float,
    offset: float,
    seconds: float,
    settle: float,
    answers: Counter[str],
) -> None:
    loop = asyncio.get_running_loop()
    async with connect(url, max_queue=None) as websocket:
        await websocket.send(
            json.dumps(
                {"type": "update_udp_endpoint", "udp_ip": endpoint[0], "udp_port": endpoint[1]}
            )
        )
        await websocket.recv()
        reader = asyncio.create_task(_count_answers(websocket, answers))
        started = loop.time()
        next_request = started + offset
        try:
            while next_request < started + seconds:
                await asyncio.sleep(max(0.0, next_request - loop.time()))
                await websocket.send(json.dumps({"type": "connect_request", "peer_id": VICTIM}))
                answers["connect_request"] += 1
                next_request += interval
            # The answers (and the probes) of the last requests are still coming.
            await asyncio.sleep(max(0.0, started + seconds + settle - loop.time()))
        finally:
            reader.cancel()


async def _count_answers(websocket: ClientConnection, answers: Counter[str]) -> None:
    async for frame in websocket:
        message = json.loads(frame)
        kind = message.get("type")
        answers[f"error:{message.get('code')}" if kind == "error" else str(kind)] += 1


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    env = _source_env(arguments.source_root)
    transport, third_party = await loop.create_datagram_endpoint(
        _ThirdParty, local_addr=("127.0.0.1", 0)
    )
    endpoint: tuple[str, int] = transport.get_extra_info("sockname")[:2]
    stun = await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)])
    port = _free_tcp_port()
    services: list[ServiceProcess] = []
    try:
        rendezvous = await start_service(
            "holepunch_rendezvous",
            {**env, "PORT": str(port), "HOST": "127.0.0.1", "AUTH_MODE": "none"},
        )
        services.append(rendezvous)
        await rendezvous.wait_for_event("server_started", timeout=60)
        victim = await start_service(
            "holepunch_worker",
            {
                **env,
                "WORKER_ID": VICTIM,
                "RENDEZVOUS_SERVICE_URL": f"http://127.0.0.1:{port}",
                "PORT": "0",
                "UDP_BIND_HOST": "127.0.0.1",
                "STUN_SERVERS": ",".join(f"{h}:{p}" for h, p in stun.addresses),
            },
        )
        services.append(victim)
        await victim.wait_for_event("endpoint_ack", timeout=60, status="success")
        answers: Counter[str] = Counter()
        interval = 1.0 / arguments.rate
        url = f"ws://127.0.0.1:{port}/ws/register/"
        window: dict[str, int] = {}

        async def at_window_end() -> None:
            await asyncio.sleep(arguments.seconds)
            window.update(datagrams=third_party.datagrams, bytes=third_party.bytes)

        await asyncio.gather(
            at_window_end(),
            *(
                _attack(
                    f"{url}attacker-{n}",
                    f"attacker-{n}",
                    endpoint,
                    interval,
                    interval * n / arguments.attackers,
                    arguments.seconds,
                    arguments.settle,
                    answers,
                )
                for n in range(arguments.attackers)
            ),
        )
        return {
            "attackers": arguments.attackers,
            "requests_per_sec_each": arguments.rate,
            "seconds": arguments.seconds,
            "third_party_datagrams_in_window": window["datagrams"],
            "third_party_bytes_in_window": window["bytes"],
            "settle_seconds": arguments.settle,
            "third_party_datagrams_after_settle": third_party.datagrams,
            "answers": dict(sorted(answers.items())),
            "victim_disconnected": bool(victim.events("rendezvous_disconnected")),
        }
    finally:
        for service in services:
            with contextlib.suppress(Exception):
                await service.stop()
        stun.close()
        transport.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m holepunch_devtools.reflection_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--attackers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.25, help="requests/s per attacker")
    parser.add_argument("--seconds", type=float, default=20.0, help="the attack's length")
    parser.add_argument(
        "--settle", type=float, default=15.0, help="then wait this long for the last probes"
    )
    parser.add_argument(
        "--source-root", type=Path, help="run the services from this checkout instead"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.attackers < 1 or arguments.rate <= 0 or arguments.seconds <= 0:
        print("reflection_bench: attackers, rate and seconds must be positive", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(run(arguments)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
