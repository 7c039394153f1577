"""Every event and field the saved log queries and log-based metrics select on is really
emitted: the services run as processes, and their own log lines are checked against
infra/terraform/log_queries.json (the one list the queries and metrics are built from).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from holepunch_devtools.processes import ServiceProcess, start_service
from holepunch_devtools.stun_server import start_stun_server
from websockets.asyncio.client import connect

from tests.support.ports import free_tcp_port, free_udp_port
from tests.support.punch_workers import FAST_PUNCHING, LyingStunServer

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def required_fields() -> Iterator[dict[tuple[str, str | None], frozenset[str]]]:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import holepunch_logs_queries

        yield holepunch_logs_queries.load_catalogue().required_fields()
    finally:
        sys.path.remove(str(SCRIPTS))


TOKEN = "catalogue-token-" + "k" * 16
FAST = {
    "UDP_BIND_HOST": "127.0.0.1",
    "STUN_RETRANSMISSIONS": "1",
    "RECONNECT_INITIAL_DELAY_SEC": "0.2",
    "RECONNECT_MAX_DELAY_SEC": "0.5",
    **FAST_PUNCHING,
}


async def start_worker(worker_id: str, port: int, stun: str, **env: str) -> ServiceProcess:
    return await start_service(
        "holepunch_worker",
        {
            "WORKER_ID": worker_id,
            "RENDEZVOUS_SERVICE_URL": f"http://127.0.0.1:{port}",
            "STUN_SERVERS": stun,
            "PORT": str(free_tcp_port()),
            "AUTH_MODE": "token",
            "RENDEZVOUS_TOKEN": TOKEN,
            **FAST,
            **env,
        },
    )


async def exercise_every_event() -> dict[str, list[ServiceProcess]]:
    """Drive both services through every logged situation the catalogue names."""
    port = free_tcp_port()
    dead_stun = f"127.0.0.1:{free_udp_port()}"  # nothing listens: stun_failed
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)]) as stun,
        LyingStunServer.running(shift=1000) as lying,  # endpoints where nothing listens
    ):
        truthful = ",".join(f"{h}:{p}" for h, p in stun.addresses)
        # The first answer is true, the second differs: classified endpoint-dependent, so
        # introductions start on the relay and upgrade once a direct probe gets through.
        dependent = f"{stun.addresses[0][0]}:{stun.addresses[0][1]},{lying.split(',')[1]}"
        workers: list[ServiceProcess] = []
        rendezvous: list[ServiceProcess] = []
        try:
            # The first worker starts before the rendezvous: reconnect_scheduled.
            main = await start_worker("catalogue-worker", port, f"{truthful},{dead_stun}")
            workers.append(main)
            await main.wait_for_event("reconnect_scheduled")
            server = await start_service(
                "holepunch_rendezvous",
                {
                    "PORT": str(port),
                    "HOST": "127.0.0.1",
                    "AUTH_MODE": "token",
                    "RENDEZVOUS_TOKEN": TOKEN,
                    "MAX_MESSAGES_PER_SEC": "20",
                },
            )
            rendezvous.append(server)
            await server.wait_for_event("server_started")
            await main.wait_for_event("endpoint_ack", status="success", timeout=20)
            await main.wait_for_event("stun_failed", timeout=20)

            # Punching: a pair that upgrades from the relay, and a pair that cannot punch.
            workers += [
                await start_worker("catalogue-dep-a", port, dependent),
                await start_worker(
                    "catalogue-dep-b", port, dependent, CONNECT_TO="catalogue-dep-a"
                ),
                await start_worker("catalogue-lost-a", port, lying),
                await start_worker("catalogue-lost-b", port, lying, CONNECT_TO="catalogue-lost-a"),
                await start_worker("catalogue-refused", port, truthful, RENDEZVOUS_TOKEN="w" * 20),
            ]
            await workers[2].wait_for_event("relay_upgraded", timeout=20)
            await workers[4].wait_for_event("punch_failed", timeout=20)
            await workers[5].wait_for_event("rendezvous_refused", timeout=20)
            await server.wait_for_event(
                "punch_result", worker_id="catalogue-dep-b", status="connected"
            )

            url = f"ws://127.0.0.1:{port}/ws/register/"
            async with connect(url + "catalogue-raw", additional_headers=auth) as raw:
                await raw.send(json.dumps({"type": "register_public_ip", "ip": "198.51.100.4"}))
                await raw.send(
                    json.dumps({"type": "update_udp_endpoint", "udp_ip": "x", "udp_port": 1})
                )
                await raw.recv()
                await raw.send("not json")
                await raw.recv()
                await raw.send(json.dumps({"type": "connect_request", "peer_id": "nobody"}))
                await raw.recv()
                for _ in range(60):  # above MAX_MESSAGES_PER_SEC
                    await raw.send(json.dumps({"type": "get_my_details"}))
                await server.wait_for_event("connection_rate_limited")
                async with connect(url + "catalogue-raw", additional_headers=auth) as replacement:
                    await server.wait_for_event("worker_replaced")
                    await replacement.close(1000, "finished")
            await server.wait_for_event("worker_disconnected", reason="finished")
            # Someone else takes the main worker's id: it is replaced (worker_id_taken).
            async with connect(url + "catalogue-worker", additional_headers=auth):
                await main.wait_for_event("worker_id_taken")

            await server.stop()  # the workers see their WebSocket close
            await main.wait_for_event("rendezvous_disconnected")
            # A development-mode rendezvous says so at start (auth_disabled).
            dev = await start_service(
                "holepunch_rendezvous",
                {"PORT": str(free_tcp_port()), "HOST": "127.0.0.1", "AUTH_MODE": "none"},
            )
            rendezvous.append(dev)
            await dev.wait_for_event("auth_disabled")
        finally:
            for process in [*workers, *rendezvous]:
                await process.stop()
    return {"rendezvous": rendezvous, "worker": workers}


async def test_every_catalogued_event_and_field_is_emitted(
    required_fields: dict[tuple[str, str | None], frozenset[str]],
) -> None:
    services = await exercise_every_event()
    missing: list[str] = []
    for (service, event), fields in sorted(required_fields.items(), key=str):
        lines: list[dict[str, Any]] = [
            line
            for process in services[service]
            for line in process.lines
            if event is None or line.get("event") == event
        ]
        if not any(fields <= line.keys() for line in lines):
            seen = sorted({key for line in lines for key in line})
            missing.append(f"{service}/{event or '*'}: needs {sorted(fields)}, saw {seen}")
    assert not missing, "\n".join(missing)
