"""Key bindings shared through a real Redis: two rendezvous instances, one binding."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

import httpx
import redis.asyncio as redis_asyncio
from holepunch_protocol import AuthMode
from holepunch_rendezvous.config import RendezvousConfig
from holepunch_rendezvous.store import RedisKeys
from holepunch_worker.identity import WorkerKey
from websockets.exceptions import ConnectionClosed

from tests.support.redis_server import RedisServer, redis_server
from tests.support.rendezvous import RunningRendezvous, eventually, running_rendezvous
from tests.support.worker_keys import connect_with_key

__all__ = ["redis_server"]  # the fixture, imported to be used here

TOKEN = "redis-keys-token-" + "t" * 16
ADMIN = "redis-keys-admin-" + "a" * 16
WORKER = {"Authorization": f"Bearer {TOKEN}"}


def config(url: str) -> RendezvousConfig:
    return RendezvousConfig(
        host="127.0.0.1",
        auth_mode=AuthMode.TOKEN,
        rendezvous_token=TOKEN,
        admin_token=ADMIN,
        debug_endpoints=True,
        registry_url=url,
        registry_ttl_sec=3.0,
    )


async def listed(instance: RunningRendezvous, worker_id: str) -> dict[str, object] | None:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{instance.http_url}/debug/list_workers",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
    entry: dict[str, object] | None = response.json()["workers"].get(worker_id)
    return entry


async def test_the_second_instance_refuses_the_impostor_too(redis_server: RedisServer) -> None:
    real_key, impostor_key = WorkerKey.generate(), WorkerKey.generate()
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(running_rendezvous(config(redis_server.url)))
        second = await stack.enter_async_context(running_rendezvous(config(redis_server.url)))
        await eventually(lambda: first.rendezvous.store.ready and second.rendezvous.store.ready)
        real, _ = await connect_with_key(first.ws_url("wA"), "wA", real_key, WORKER)
        update = {"type": "update_udp_endpoint", "udp_ip": "203.0.113.5", "udp_port": 4001}
        await real.send(json.dumps(update))
        assert json.loads(await asyncio.wait_for(real.recv(), 5))["status"] == "success"
        before = await listed(second, "wA")
        assert before is not None and before["public_key"] == real_key.public_key

        impostor, _ = await connect_with_key(second.ws_url("wA"), "wA", impostor_key, WORKER)
        error = json.loads(await asyncio.wait_for(impostor.recv(), 5))
        assert error["code"] == "worker_key_mismatch"
        try:
            await asyncio.wait_for(impostor.recv(), 5)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4403
        else:
            raise AssertionError("the impostor's connection stayed open")

        # The real worker's shared entry and its connection are as they were.
        assert await listed(second, "wA") == before
        assert await listed(first, "wA") == {**before, "websocket_connected": True}
        echo = {"type": "echo_request", "payload": "x"}
        await real.send(json.dumps(echo))
        assert json.loads(await asyncio.wait_for(real.recv(), 5))["type"] == "echo_response"
        await real.close()

        # Its binding outlives the connection, in Redis, for every instance.
        raw = redis_asyncio.from_url(redis_server.url, decode_responses=True)
        key_name = RedisKeys("holepunch:").namespaces["key"] + "wA"
        await eventually(lambda: first.rendezvous.registry.get("wA") is None)

        async def binding_expires() -> bool:
            return int(await raw.pttl(key_name)) > 0

        await eventually(binding_expires)
        assert await raw.get(key_name) == real_key.public_key
        await raw.aclose()
        retry, _ = await connect_with_key(second.ws_url("wA"), "wA", impostor_key, WORKER)
        assert json.loads(await asyncio.wait_for(retry.recv(), 5))["code"] == (
            "worker_key_mismatch"
        )
        await retry.close()

        # Released on one instance, claimable on the other.
        async with httpx.AsyncClient() as client:
            response = await client.delete(
                f"{first.http_url}/admin/bindings/wA",
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
        assert response.status_code == 200
        assert response.json()["released_public_key"] == real_key.public_key
        claimed, _ = await connect_with_key(second.ws_url("wA"), "wA", impostor_key, WORKER)
        await claimed.send(json.dumps(update))
        assert json.loads(await asyncio.wait_for(claimed.recv(), 5))["status"] == "success"
        await claimed.close()
