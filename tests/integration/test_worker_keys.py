"""The worker program's key against the real rendezvous: it proves its key on every
connection, and a second worker process under the same worker_id but another key (the
impostor with the shared token) is refused while the first stays connected."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from holepunch_devtools.stun_server import start_stun_server
from holepunch_protocol import AuthMode
from holepunch_rendezvous.config import RendezvousConfig
from holepunch_worker.config import load_config
from holepunch_worker.worker import Worker

from tests.support.rendezvous import eventually, running_rendezvous

TOKEN = "worker-keys-token-" + "t" * 16


class Events(logging.Handler):
    """Every event the worker logs, with its fields."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(getattr(record, "json_fields", {}))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]


async def test_the_impostor_process_is_refused_and_the_real_worker_stays() -> None:
    config = RendezvousConfig(
        host="127.0.0.1", auth_mode=AuthMode.TOKEN, rendezvous_token=TOKEN, debug_endpoints=True
    )
    stun = await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)])
    async with running_rendezvous(config) as server:
        env = {
            "RENDEZVOUS_SERVICE_URL": server.http_url,
            "WORKER_ID": "wA",
            "PORT": "0",
            "UDP_BIND_HOST": "127.0.0.1",
            "STUN_SERVERS": ",".join(f"{h}:{p}" for h, p in stun.addresses),
            "AUTH_MODE": "token",
            "RENDEZVOUS_TOKEN": TOKEN,
            "RECONNECT_INITIAL_DELAY_SEC": "0.05",
            "RECONNECT_MAX_DELAY_SEC": "30",
        }
        stop = asyncio.Event()
        workers: dict[str, tuple[Worker, Events]] = {}
        tasks = []
        try:
            for name in ("real", "impostor"):
                events = Events()
                logger = logging.getLogger(f"tests.worker_keys.{name}")
                logger.addHandler(events)
                logger.setLevel(logging.INFO)
                worker = Worker(load_config(env), logger)
                workers[name] = (worker, events)
                tasks.append(asyncio.create_task(worker.run(stop)))
                if name == "real":
                    await eventually(
                        lambda: bool(workers["real"][1].named("endpoint_ack")), 10, "real ack"
                    )
            real, real_events = workers["real"]
            impostor, impostor_events = workers["impostor"]
            await eventually(
                lambda: bool(impostor_events.named("rendezvous_refused")), 10, "refusal"
            )
            refusal = impostor_events.named("rendezvous_refused")[0]
            assert (refusal["code"], refusal["reason"]) == (
                4403,
                "worker_id is bound to another key",
            )
            record = server.rendezvous.registry.get("wA")
            assert record is not None and record.public_key == real.status()["public_key"]
            assert real.status()["rendezvous_state"] == "connected"
            assert not real_events.named("worker_id_taken")
            assert not real_events.named("rendezvous_disconnected")
            assert impostor.status()["public_key"] != real.status()["public_key"]
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 15)
            for _, events in workers.values():
                for name in ("real", "impostor"):
                    logging.getLogger(f"tests.worker_keys.{name}").removeHandler(events)
    stun.close()
