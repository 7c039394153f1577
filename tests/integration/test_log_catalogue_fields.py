"""Every event and field the saved log queries and log-based metrics select on is really
emitted: the services run as processes, and their own log lines are checked against
infra/terraform/log_queries.json (the one list the queries and metrics are built from).

Every step waits for a log line, never for a fixed time. Eight Python services start here,
six of them at once: on a busy 2-core machine (`pytest -n auto` beside other tests) one can
take 20 s only to import its modules, hence one generous deadline for every wait; and a
wait that runs out says what each process was doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from holepunch_devtools.processes import LogLine, ServiceProcess, start_service
from holepunch_devtools.stun_server import start_stun_server
from holepunch_worker.identity import WorkerKey

from tests.support.ports import free_tcp_port, free_udp_port
from tests.support.punch_workers import FAST_PUNCHING, LyingStunServer
from tests.support.worker_keys import connect_with_key

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

# The time any one awaited log line may take, from the step before it.
EVENT_DEADLINE_SEC = 90.0
# How many of each process's last lines a failure shows.
RECENT_LINES = 12


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


@dataclass
class Cast:
    """Every process the test started, by name and kind ("rendezvous" or "worker")."""

    kinds: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def add(self, kind: str, name: str, process: ServiceProcess) -> ServiceProcess:
        self.kinds[name], self.processes[name] = kind, process
        return process

    def of_kind(self, kind: str) -> list[ServiceProcess]:
        return [self.processes[name] for name, k in self.kinds.items() if k == kind]

    async def expect(self, name: str, event: str, **fields: Any) -> LogLine:
        """The log line of `name` for `event` (with these fields), awaited."""
        try:
            return await self.processes[name].wait_for_event(
                event, timeout=EVENT_DEADLINE_SEC, **fields
            )
        except AssertionError as error:
            # wait_for_event's own message ends with that one process's tail: keep its first line.
            raise AssertionError(
                f"{name}: {str(error).splitlines()[0]}\n\n{self.report()}"
            ) from None

    def report(self) -> str:
        """Each process: running or exited, the events it logged, its last lines."""
        parts = []
        for name, process in self.processes.items():
            code = process.process.returncode
            state = "running" if code is None else f"exited with {code}"
            seen = Counter(str(line["event"]) for line in process.lines if "event" in line)
            events = ", ".join(f"{event} x{count}" for event, count in seen.items()) or "none"
            recent = process.raw_lines[-RECENT_LINES:]
            tail = "\n".join(f"    {line}" for line in recent) or "    (no output yet)"
            parts.append(f"{name} ({state}; events: {events}); last lines:\n{tail}")
        return "\n".join(parts)

    async def stop_all(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(TimeoutError):
                await process.stop()


async def exercise_every_event(cast: Cast, key_dir: Path) -> None:
    """Drive both services through every logged situation the catalogue names."""
    port = free_tcp_port()
    # The main worker's key, in a file, so that a client here can take its id over.
    seed = os.urandom(32)
    (key_dir / "catalogue-worker.key").write_bytes(seed)
    main_key = WorkerKey(Ed25519PrivateKey.from_private_bytes(seed))
    raw_key = WorkerKey.generate()
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
        # The first worker starts before the rendezvous: reconnect_scheduled.
        cast.add(
            "worker",
            "catalogue-worker",
            await start_worker(
                "catalogue-worker",
                port,
                f"{truthful},{dead_stun}",
                WORKER_KEY_FILE=str(key_dir / "catalogue-worker.key"),
            ),
        )
        await cast.expect("catalogue-worker", "reconnect_scheduled")
        server = cast.add(
            "rendezvous",
            "rendezvous",
            await start_service(
                "holepunch_rendezvous",
                {
                    "PORT": str(port),
                    "HOST": "127.0.0.1",
                    "AUTH_MODE": "token",
                    "RENDEZVOUS_TOKEN": TOKEN,
                    "MAX_MESSAGES_PER_SEC": "20",
                    "INTRODUCTION_POLICY": "*",
                },
            ),
        )
        await cast.expect("rendezvous", "server_started")
        await cast.expect("catalogue-worker", "endpoint_ack", status="success")
        await cast.expect("catalogue-worker", "stun_failed")

        # Punching: a pair that upgrades from the relay, and a pair that cannot punch.
        for name, stun_servers, env in [
            ("catalogue-dep-a", dependent, {}),
            ("catalogue-dep-b", dependent, {"CONNECT_TO": "catalogue-dep-a"}),
            ("catalogue-lost-a", lying, {}),
            ("catalogue-lost-b", lying, {"CONNECT_TO": "catalogue-lost-a"}),
            ("catalogue-refused", truthful, {"RENDEZVOUS_TOKEN": "w" * 20}),
        ]:
            cast.add("worker", name, await start_worker(name, port, stun_servers, **env))
        await cast.expect("catalogue-dep-b", "relay_upgraded")
        await cast.expect("catalogue-lost-b", "punch_failed")
        await cast.expect("catalogue-refused", "rendezvous_refused")
        await cast.expect(
            "rendezvous", "punch_result", worker_id="catalogue-dep-b", status="connected"
        )

        url = f"ws://127.0.0.1:{port}/ws/register/"
        raw_connection, _ = await connect_with_key(
            url + "catalogue-raw", "catalogue-raw", raw_key, auth
        )
        async with asyncio.timeout(EVENT_DEADLINE_SEC), raw_connection as raw:
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
            await cast.expect("rendezvous", "connection_rate_limited")
            replacement_connection, _ = await connect_with_key(
                url + "catalogue-raw", "catalogue-raw", raw_key, auth
            )
            async with replacement_connection as replacement:
                await cast.expect("rendezvous", "worker_replaced")
                await replacement.close(1000, "finished")
        await cast.expect("rendezvous", "worker_disconnected", reason="finished")
        # Someone else with its key takes the main worker's id: it is replaced
        # (worker_id_taken).
        taker, _ = await connect_with_key(
            url + "catalogue-worker", "catalogue-worker", main_key, auth
        )
        async with taker:
            await cast.expect("catalogue-worker", "worker_id_taken")

        await server.stop()  # the workers see their WebSocket close
        await cast.expect("catalogue-worker", "rendezvous_disconnected")
        # A development-mode rendezvous says so at start (auth_disabled).
        cast.add(
            "rendezvous",
            "rendezvous-dev",
            await start_service(
                "holepunch_rendezvous",
                {"PORT": str(free_tcp_port()), "HOST": "127.0.0.1", "AUTH_MODE": "none"},
            ),
        )
        await cast.expect("rendezvous-dev", "auth_disabled")


async def test_every_catalogued_event_and_field_is_emitted(
    required_fields: dict[tuple[str, str | None], frozenset[str]],
    tmp_path: Path,
) -> None:
    cast = Cast()
    try:
        await exercise_every_event(cast, tmp_path)
    finally:
        await cast.stop_all()
    missing: list[str] = []
    for (service, event), fields in sorted(required_fields.items(), key=str):
        lines: list[dict[str, Any]] = [
            line
            for process in cast.of_kind(service)
            for line in process.lines
            if event is None or line.get("event") == event
        ]
        if not any(fields <= line.keys() for line in lines):
            seen = sorted({key for line in lines for key in line})
            missing.append(f"{service}/{event or '*'}: needs {sorted(fields)}, saw {seen}")
    assert not missing, "\n".join([*missing, "", cast.report()])
