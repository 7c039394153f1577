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

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def required_fields() -> Iterator[dict[tuple[str, str | None], frozenset[str]]]:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import holepunch_logs_queries

        yield holepunch_logs_queries.load_catalogue().required_fields()
    finally:
        sys.path.remove(str(SCRIPTS))


async def exercise_every_event() -> dict[str, ServiceProcess]:
    """Drive both services through every logged situation the catalogue names."""
    port = free_tcp_port()
    dead_stun = f"127.0.0.1:{free_udp_port()}"  # nothing listens: stun_failed
    async with await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)]) as stun:
        servers = ",".join(f"{h}:{p}" for h, p in stun.addresses)
        # The worker starts first, so its first connection fails: reconnect_scheduled.
        worker = await start_service(
            "holepunch_worker",
            {
                "WORKER_ID": "catalogue-worker",
                "RENDEZVOUS_SERVICE_URL": f"http://127.0.0.1:{port}",
                "STUN_SERVERS": f"{servers},{dead_stun}",
                "STUN_RETRANSMISSIONS": "1",
                "UDP_BIND_HOST": "127.0.0.1",
                "PORT": str(free_tcp_port()),
                "RECONNECT_INITIAL_DELAY_SEC": "0.2",
                "RECONNECT_MAX_DELAY_SEC": "0.5",
            },
        )
        rendezvous: ServiceProcess | None = None
        try:
            await worker.wait_for_event("reconnect_scheduled")
            rendezvous = await start_service(
                "holepunch_rendezvous",
                {"PORT": str(port), "HOST": "127.0.0.1", "AUTH_MODE": "none"},
            )
            await rendezvous.wait_for_event("server_started")
            await worker.wait_for_event("endpoint_ack", status="success", timeout=20)
            await worker.wait_for_event("stun_failed", timeout=20)

            url = f"ws://127.0.0.1:{port}/ws/register/catalogue-raw"
            async with connect(url) as raw:
                await raw.send(json.dumps({"type": "register_public_ip", "ip": "198.51.100.4"}))
                await raw.send(
                    json.dumps({"type": "update_udp_endpoint", "udp_ip": "x", "udp_port": 1})
                )
                await raw.recv()
                await raw.send("not json")
                await raw.recv()
                async with connect(url) as replacement:
                    await rendezvous.wait_for_event("worker_replaced")
                    await replacement.close(1000, "finished")
            await rendezvous.wait_for_event("worker_disconnected", reason="finished")

            await rendezvous.stop()  # the worker sees its WebSocket close
            await worker.wait_for_event("rendezvous_disconnected")
        finally:
            await worker.stop()
            if rendezvous is not None:
                await rendezvous.stop()
    return {"rendezvous": rendezvous, "worker": worker}  # type: ignore[dict-item]


async def test_every_catalogued_event_and_field_is_emitted(
    required_fields: dict[tuple[str, str | None], frozenset[str]],
) -> None:
    services = await exercise_every_event()
    missing: list[str] = []
    for (service, event), fields in sorted(required_fields.items(), key=str):
        lines: list[dict[str, Any]] = [
            line for line in services[service].lines if event is None or line.get("event") == event
        ]
        if not any(fields <= line.keys() for line in lines):
            seen = sorted({key for line in lines for key in line})
            missing.append(f"{service}/{event or '*'}: needs {sorted(fields)}, saw {seen}")
    assert not missing, "\n".join(missing)
