"""The registry shared through a real Redis: several rendezvous processes, one registry.

Each instance is `python -m holepunch_rendezvous` with REGISTRY_URL pointing at the same
redis-server; workers are plain WebSocket clients spread over the instances.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from holepunch_devtools.processes import ServiceProcess, start_service
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.id_tokens import stand_in_issuer
from tests.support.ports import free_tcp_port
from tests.support.redis_server import RedisServer, redis_server
from tests.support.rendezvous import ask, eventually

__all__ = ["redis_server"]  # the fixture, imported to be used here

TTL_SEC = 3.0  # REGISTRY_TTL_SEC for these tests: heartbeats every 1 s


@dataclass
class Instance:
    service: ServiceProcess
    port: int
    http: httpx.AsyncClient

    def ws_url(self, worker_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/register/{worker_id}"

    async def get(self, path: str) -> Any:
        response = await self.http.get(f"http://127.0.0.1:{self.port}{path}")
        assert response.status_code == 200, response.text
        return response.json()

    async def workers(self) -> dict[str, Any]:
        listed: dict[str, Any] = (await self.get("/debug/list_workers"))["workers"]
        return listed

    async def health(self) -> int:
        response = await self.http.get(f"http://127.0.0.1:{self.port}/healthz")
        return response.status_code


class Cluster:
    def __init__(self, redis: RedisServer, stack: AsyncExitStack) -> None:
        self.redis = redis
        self.stack = stack
        self.instances: list[Instance] = []

    async def start(self, **env: str) -> Instance:
        port = free_tcp_port()
        service = await start_service(
            "holepunch_rendezvous",
            {
                "PORT": str(port),
                "HOST": "127.0.0.1",
                "AUTH_MODE": "none",
                "DEBUG_ENDPOINTS": "1",
                "REGISTRY_URL": self.redis.url,
                "REGISTRY_TTL_SEC": str(TTL_SEC),
                **env,
            },
        )
        self.stack.push_async_callback(_stop, service)
        await service.wait_for_event("server_started", port=port, registry="redis")
        http = await self.stack.enter_async_context(httpx.AsyncClient(timeout=10))
        instance = Instance(service, port, http)
        self.instances.append(instance)
        return instance

    async def worker(
        self, instance: Instance, worker_id: str, udp_port: int, **headers: str
    ) -> ClientConnection:
        """A connected worker that has reported an endpoint and got the ack."""
        ws = await self.stack.enter_async_context(
            connect(instance.ws_url(worker_id), additional_headers=headers)
        )
        await ws.send(
            json.dumps(
                {
                    "type": "update_udp_endpoint",
                    "udp_ip": "203.0.113.7",
                    "udp_port": udp_port,
                    "mapping": "endpoint_independent",
                }
            )
        )
        assert json.loads(await ws.recv()) == {"type": "udp_endpoint_ack", "status": "success"}
        return ws


async def _stop(service: ServiceProcess) -> None:
    if service.process.returncode is None:
        await service.stop(timeout=15)


@pytest.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        yield Cluster(redis_server, stack)


async def next_frame(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return frame


async def test_every_instance_lists_every_worker_and_pages_them(cluster: Cluster) -> None:
    a, b = await cluster.start(), await cluster.start()
    for index in range(3):
        await cluster.worker(a, f"on-a-{index}", 40000 + index)
    on_b = [await cluster.worker(b, f"on-b-{index}", 41000 + index) for index in range(2)]
    everyone = {"on-a-0", "on-a-1", "on-a-2", "on-b-0", "on-b-1"}

    for instance in (a, b):
        listing = await instance.get("/debug/list_workers")
        assert listing["connected_workers_count"] == 5
        assert set(listing["workers"]) == everyone
        remote = listing["workers"]["on-b-1" if instance is a else "on-a-2"]
        assert remote["stun_reported_udp_ip"] == "203.0.113.7"
        assert remote["stun_reported_udp_port"] == (41001 if instance is a else 40002)
        assert remote["nat_mapping"] == "endpoint_independent"
        assert remote["websocket_connected"] is True and remote["websocket_raw_state"] == 1
        assert remote["websocket_observed_ip"] == "127.0.0.1"
        assert remote["udp_endpoint_update_count"] == 1 and remote["connected_since"]

    # Pages, ordered by worker id, the same from either instance.
    seen: list[str] = []
    cursor = ""
    while True:
        page = await b.get(f"/debug/list_workers?limit=2&cursor={cursor}")
        assert page["connected_workers_count"] == 5 and len(page["workers"]) <= 2
        seen += list(page["workers"])
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == sorted(everyone)

    details = await ask(on_b[0], {"type": "get_my_details"})
    assert (details["worker_id"], details["udp_port"]) == ("on-b-0", 41000)

    # One connect script and one save per registration: two Redis round trips.
    registry = await a.get("/debug/registry")
    assert registry["backend"] == "redis" and registry["ready"] is True
    assert registry["round_trips"]["connect"] == 3 and registry["round_trips"]["save"] == 3

    await on_b[1].close()
    await eventually(
        lambda: _lacks(a, "on-b-1"), timeout=5, what="a disconnected worker leaves every list"
    )


async def _lacks(instance: Instance, worker_id: str) -> bool:
    return worker_id not in await instance.workers()


async def _has(instance: Instance, worker_id: str) -> bool:
    return worker_id in await instance.workers()


async def test_introductions_and_relayed_datagrams_cross_instances(cluster: Cluster) -> None:
    a, b, c = await cluster.start(), await cluster.start(), await cluster.start()
    x = await cluster.worker(a, "peer-x", 42001)
    y = await cluster.worker(b, "peer-y", 42002)

    await x.send(json.dumps({"type": "connect_request", "peer_id": "peer-y"}))
    to_x, to_y = await next_frame(x), await next_frame(y)
    assert to_x["type"] == to_y["type"] == "peer_introduction"
    assert to_x["session_id"] == to_y["session_id"] and to_x["secret"] == to_y["secret"]
    assert (to_x["peer_id"], to_x["peer_udp_port"], to_x["role"]) == (
        "peer-y",
        42002,
        "initiator",
    )
    assert (to_y["peer_id"], to_y["peer_udp_port"], to_y["role"]) == ("peer-x", 42001, "responder")
    session_id = to_x["session_id"]

    # Relayed both ways: x's instance made the session, y's reads it from Redis.
    one = base64.b64encode(b"HPX1 from x").decode()
    await x.send(json.dumps({"type": "relay_datagram", "session_id": session_id, "data": one}))
    assert await next_frame(y) == {"type": "relay_datagram", "session_id": session_id, "data": one}
    two = base64.b64encode(b"HPX1 from y").decode()
    await y.send(json.dumps({"type": "relay_datagram", "session_id": session_id, "data": two}))
    assert await next_frame(x) == {"type": "relay_datagram", "session_id": session_id, "data": two}
    # A session neither instance made is still refused.
    refused = await ask(y, {"type": "relay_datagram", "session_id": "0" * 32, "data": two})
    assert refused["code"] == "unknown_session"

    # An operator on a third instance introduces two workers that are not connected to it.
    response = await c.http.post(
        f"http://127.0.0.1:{c.port}/admin/introduce",
        json={"initiator": "peer-y", "responder": "peer-x"},
    )
    assert response.status_code == 200, response.text
    admin_session = response.json()["session_id"]
    to_y, to_x = await next_frame(y), await next_frame(x)
    assert to_y["session_id"] == to_x["session_id"] == admin_session
    assert (to_y["role"], to_x["role"]) == ("initiator", "responder")

    missing = await c.http.post(
        f"http://127.0.0.1:{c.port}/admin/introduce",
        json={"initiator": "peer-y", "responder": "nobody"},
    )
    assert missing.status_code == 404


async def test_a_duplicate_on_another_instance_replaces_the_old_connection(
    cluster: Cluster,
) -> None:
    a, b = await cluster.start(), await cluster.start()
    old = await cluster.worker(a, "dup", 43001)
    new = await cluster.worker(b, "dup", 43002)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(old.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
    await a.service.wait_for_event("worker_replaced", worker_id="dup")
    await b.service.wait_for_event("worker_replaced", worker_id="dup")
    await a.service.wait_for_event("worker_disconnected", worker_id="dup")
    # The old instance's clean-up leaves the new entry alone.
    for instance in (a, b):
        assert (await instance.workers())["dup"]["stun_reported_udp_port"] == 43002
    assert (await ask(new, {"type": "get_my_details"}))["udp_port"] == 43002


async def test_worker_id_ownership_is_shared(cluster: Cluster) -> None:
    audience = "https://rendezvous.example"
    with stand_in_issuer() as issuer:
        # These clients speak the original, keyless protocol.
        env = {
            "AUTH_MODE": "iam",
            "IAM_CERTS_URL": issuer.certs_url,
            "IAM_AUDIENCE": audience,
            "ALLOW_KEYLESS_WORKERS": "1",
        }
        a = await cluster.start(**env)
        b = await cluster.start(**env)
        owner = {"Authorization": f"Bearer {issuer.token('one@example.iam', audience)}"}
        other = {"Authorization": f"Bearer {issuer.token('two@example.iam', audience)}"}
        await cluster.worker(a, "owned", 44001, **owner)
        async with connect(b.ws_url("owned"), additional_headers=other) as thief:
            reply = json.loads(await asyncio.wait_for(thief.recv(), 5))
            assert reply["code"] == "worker_id_taken"
            with pytest.raises(ConnectionClosed) as closed:
                await thief.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        # The owner itself may move to the other instance.
        await cluster.worker(b, "owned", 44002, **owner)


async def test_a_killed_instances_workers_vanish_within_the_ttl(cluster: Cluster) -> None:
    a, b = await cluster.start(), await cluster.start()
    await cluster.worker(a, "doomed-1", 45001)
    await cluster.worker(a, "doomed-2", 45002)
    await cluster.worker(b, "survivor", 45003)
    assert set(await b.workers()) == {"doomed-1", "doomed-2", "survivor"}

    os.kill(a.service.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    # Waiting out the TTL is the point of this test: entries expire at most TTL_SEC after
    # the dead instance's last heartbeat, which came at most TTL_SEC / 3 before the kill.
    await eventually(
        lambda: _only(b, {"survivor"}), timeout=TTL_SEC + 2, what="dead workers expire"
    )
    gone_after = time.monotonic() - killed
    assert gone_after <= TTL_SEC + 0.5
    # The index is swept too: the paged count drops by the next heartbeat after that.
    await eventually(lambda: _paged_count(b, 1), timeout=TTL_SEC / 3 + 2, what="index swept")

    # They come back when they reconnect elsewhere.
    await cluster.worker(b, "doomed-1", 45011)
    assert (await b.workers())["doomed-1"]["stun_reported_udp_port"] == 45011


async def _only(instance: Instance, expected: set[str]) -> bool:
    return set(await instance.workers()) == expected


async def _paged_count(instance: Instance, expected: int) -> bool:
    page = await instance.get("/debug/list_workers?limit=10")
    return bool(page["connected_workers_count"] == expected)


async def test_redis_restart_keeps_connections_and_repopulates(cluster: Cluster) -> None:
    a, b = await cluster.start(), await cluster.start()
    staying = await cluster.worker(a, "stays-a", 46001)
    await cluster.worker(b, "stays-b", 46002)
    leaving = await cluster.worker(a, "leaves", 46003)
    assert await a.health() == 200 and await a.get("/livez") == {"status": "ok"}

    cluster.redis.stop()
    for instance in (a, b):
        await eventually(lambda i=instance: _status_is(i, 503), timeout=5, what="not ready")
        await instance.service.wait_for_event("registry_unavailable")
    body = (await a.http.get(f"http://127.0.0.1:{a.port}/healthz")).json()
    assert body["status"] == "unavailable" and "registry unavailable" in body["reason"]
    assert await a.get("/livez") == {"status": "ok"}  # liveness never depends on Redis

    # Connections stay up and keep working on their own instance.
    echo = await ask(staying, {"type": "echo_request", "payload": "still here"})
    assert echo["type"] == "echo_response"
    assert (await ask(staying, {"type": "get_my_details"}))["udp_port"] == 46001
    await leaving.close()  # leaves during the outage: must not come back
    await a.service.wait_for_event("worker_disconnected", worker_id="leaves")

    cluster.redis.start()  # same port, empty
    for instance in (a, b):
        await eventually(lambda i=instance: _status_is(i, 200), timeout=5, what="ready again")
        await instance.service.wait_for_event("registry_recovered")
    for instance in (a, b):
        assert set(await instance.workers()) == {"stays-a", "stays-b"}
        assert (await instance.workers())["stays-a"]["stun_reported_udp_port"] == 46001
    assert a.service.process.returncode is None and b.service.process.returncode is None
    assert len(a.service.events("registry_unavailable")) == 1  # once per outage, no flood


async def _status_is(instance: Instance, status: int) -> bool:
    return await instance.health() == status


async def test_starts_without_redis_and_becomes_ready_when_it_answers(cluster: Cluster) -> None:
    cluster.redis.stop()
    a = await cluster.start()  # serves at once: no crash loop while Redis is away
    await a.service.wait_for_event("registry_unavailable")
    assert await a.health() == 503 and await a.get("/livez") == {"status": "ok"}
    early = await cluster.worker(a, "early", 47001)  # served from this instance alone

    cluster.redis.start()
    await eventually(lambda: _status_is(a, 200), timeout=5, what="ready once Redis answers")
    b = await cluster.start()
    assert (await b.workers())["early"]["stun_reported_udp_port"] == 47001
    assert (await ask(early, {"type": "get_my_details"}))["worker_id"] == "early"


async def test_sigterm_removes_the_instances_workers_at_once(cluster: Cluster) -> None:
    a, b = await cluster.start(), await cluster.start()
    leaving = await cluster.worker(a, "on-stopping", 48001)
    await cluster.worker(b, "on-staying", 48002)
    a.service.process.terminate()
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(leaving.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await a.service.stop(timeout=10) == 0
    # Removed by its clean-up, not left to expire.
    assert set(await b.workers()) == {"on-staying"}
    registry = await b.get("/debug/registry")
    assert registry["ready"] is True
