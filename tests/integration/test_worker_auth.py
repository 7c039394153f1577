"""A worker process authenticating to a real rendezvous: shared token, and Google ID
tokens from a stand-in metadata server (the real google-auth code path)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from holepunch_devtools.processes import ServiceProcess, start_service
from holepunch_devtools.stun_server import start_stun_server
from holepunch_protocol import AuthMode
from holepunch_rendezvous.config import RendezvousConfig

from tests.support.id_tokens import stand_in_issuer
from tests.support.metadata_server import fake_metadata_server
from tests.support.ports import free_tcp_port
from tests.support.rendezvous import RunningRendezvous, eventually, running_rendezvous

TOKEN = "shared-secret-" + "z" * 20


@asynccontextmanager
async def worker(server: RunningRendezvous, env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    async with await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)]) as stun:
        process = await start_service(
            "holepunch_worker",
            {
                "WORKER_ID": "authed-worker",
                "RENDEZVOUS_SERVICE_URL": server.http_url,
                "STUN_SERVERS": ",".join(f"{h}:{p}" for h, p in stun.addresses),
                "UDP_BIND_HOST": "127.0.0.1",
                "PORT": str(free_tcp_port()),
                "RECONNECT_INITIAL_DELAY_SEC": "0.1",
                "RECONNECT_MAX_DELAY_SEC": "20",
                **env,
            },
        )
        try:
            yield process
        finally:
            await process.stop()


async def test_shared_token_registers_and_a_wrong_one_backs_off() -> None:
    config = RendezvousConfig(host="127.0.0.1", auth_mode=AuthMode.TOKEN, rendezvous_token=TOKEN)
    async with running_rendezvous(config) as server:
        async with worker(server, {"AUTH_MODE": "token", "RENDEZVOUS_TOKEN": TOKEN}) as good:
            await good.wait_for_event("endpoint_ack", status="success")
        async with worker(server, {"AUTH_MODE": "token", "RENDEZVOUS_TOKEN": "x" * 20}) as bad:
            refused = await bad.wait_for_event("rendezvous_refused")
            scheduled = await bad.wait_for_event("reconnect_scheduled")
        assert refused["code"] == 4401
        assert 10 <= scheduled["delay_s"] <= 20  # the longest delay, not a tight retry loop


async def test_iam_id_token_from_the_metadata_server_identifies_the_worker() -> None:
    email = "holepunch-worker@project.iam.gserviceaccount.com"
    with stand_in_issuer() as issuer:
        config = RendezvousConfig(
            host="127.0.0.1", auth_mode=AuthMode.IAM, iam_certs_url=issuer.certs_url
        )
        async with running_rendezvous(config) as server:
            with fake_metadata_server(email, issuer) as metadata:
                async with worker(server, {"AUTH_MODE": "iam", **metadata.env}) as process:
                    await process.wait_for_event("endpoint_ack", status="success", timeout=20)
            assert metadata.audiences == [server.http_url]  # audience: the rendezvous URL
            await eventually(lambda: len(server.rendezvous.registry) == 0)
            owner = server.rendezvous.ownership.owner("authed-worker", time.time())
            assert owner == email
