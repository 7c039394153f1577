"""The fleet page's HTTP side against a real rendezvous (uvicorn on loopback) and real
WebSocket clients registering as workers: who may see it, its JSON, its live stream
(also across two instances sharing a real Redis), and the small fixes of issue 14."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from holepunch_devtools.processes import start_service
from holepunch_rendezvous.auth import AuthMode
from holepunch_rendezvous.config import RendezvousConfig
from websockets.asyncio.client import ClientConnection, connect

from tests.support.ports import free_tcp_port
from tests.support.redis_server import RedisServer, redis_server
from tests.support.rendezvous import RunningRendezvous, ask, eventually, running_rendezvous

__all__ = ["redis_server"]  # the fixture, imported to be used here

ADMIN_TOKEN = "admin-token-for-the-ui-tests"
LIVE_SEC = 2.0


def config(**changes: Any) -> RendezvousConfig:
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "debug_endpoints": True}
    return RendezvousConfig(**{**fields, **changes})


def basic(password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"operator:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def register(
    server: RunningRendezvous | str, worker_id: str, ip: str, mapping: str, tags: str = ""
) -> ClientConnection:
    """A WebSocket client registered as `worker_id` with an endpoint (`server`: a
    rendezvous in this process, or the http:// URL of one)."""
    base = server if isinstance(server, str) else server.http_url
    url = base.replace("http://", "ws://") + f"/ws/register/{worker_id}"
    ws = await connect(url + (f"?tags={tags}" if tags else ""))
    ack = await ask(
        ws,
        {"type": "update_udp_endpoint", "udp_ip": ip, "udp_port": 4000, "mapping": mapping},
    )
    assert ack["status"] == "success", ack
    return ws


async def test_index_lists_the_debug_endpoints_and_the_page_only_when_they_are_on() -> None:
    for debug in (False, True):
        async with (
            running_rendezvous(config(debug_endpoints=debug)) as server,
            httpx.AsyncClient(base_url=server.http_url) as http,
        ):
            listed = (await http.get("/")).json()["endpoints"]
            assert ("/debug/sessions" in listed) is debug
            assert ("/ui" in listed) is debug
            assert all(not entry.startswith("/debug") for entry in listed) or debug
            page = await http.get("/ui")
            assert page.status_code == (200 if debug else 404)
            assert (await http.get("/ui/api/workers")).status_code == (200 if debug else 404)


async def test_the_page_needs_the_admin_credential_when_auth_is_on() -> None:
    token_config = config(
        auth_mode=AuthMode.TOKEN, rendezvous_token="x" * 16, admin_token=ADMIN_TOKEN
    )
    async with (
        running_rendezvous(token_config) as server,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        for path in ("/ui", "/ui/static/app.js", "/ui/api/workers", "/ui/api/paths"):
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic"), path
            assert (await http.get(path, headers=basic("wrong-password-xxxx"))).status_code == 401
            assert (await http.get(path, headers=basic(ADMIN_TOKEN))).status_code == 200, path
            bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            assert (await http.get(path, headers=bearer)).status_code == 200, path
        # /debug/* still names its bearer token.
        assert (await http.get("/debug/sessions")).headers["www-authenticate"] == "Bearer"
        assert (
            await http.get("/ui/static/nothing.js", headers=basic(ADMIN_TOKEN))
        ).status_code == 404

        # A browser's login is sent on any request to the origin, even one another site
        # makes: a change needs the page's own header too.
        login = basic(ADMIN_TOKEN)
        cross_site = await http.delete("/admin/bindings/someone", headers=login)
        assert cross_site.status_code == 401
        introduce = {"initiator": "a", "responder": "b"}
        assert (
            await http.post("/admin/introduce", json=introduce, headers=login)
        ).status_code == 401
        from_page = {**login, "X-Holepunch-UI": "1"}
        released = await http.delete("/admin/bindings/someone", headers=from_page)
        assert released.status_code == 404 and released.json()["error"] == "not_found"
        made = await http.post("/admin/introduce", json=introduce, headers=from_page)
        assert made.status_code == 404 and made.json()["error"] == "peer_not_found"


async def test_the_table_is_filtered_and_paged_on_the_server() -> None:
    async with (
        running_rendezvous(config()) as server,
        httpx.AsyncClient(base_url=server.http_url) as http,
        contextlib.AsyncExitStack() as sockets,
    ):
        kinds = ["endpoint_independent", "endpoint_dependent", "unknown"]
        for n in range(9):
            ws = await register(
                server, f"w-{n}", f"203.0.113.{n + 1}", kinds[n % 3], "gpu" if n < 2 else ""
            )
            sockets.push_async_callback(ws.close)
        quiet = await sockets.enter_async_context(connect(server.ws_url("w-quiet")))
        await ask(quiet, {"type": "echo_request", "payload": "x"})  # registered, no endpoint

        body = (await http.get("/ui/api/workers", params={"limit": 4})).json()
        assert body["total"] == 10 and body["matched"] == 10
        assert [row["worker_id"] for row in body["rows"]] == ["w-0", "w-1", "w-2", "w-3"]
        assert body["mappings"] == {
            "endpoint_independent": 3,
            "endpoint_dependent": 3,
            "unknown": 3,
            "no_endpoint": 1,
        }
        assert body["tags"] == {"gpu": 2}
        first = body["rows"][0]
        assert first["endpoint"] == "203.0.113.1:4000" and first["keyless"] is True
        assert first["tags"] == ["gpu"] and first["connected_since"].endswith("+00:00")
        second_page = (await http.get("/ui/api/workers", params={"limit": 4, "offset": 8})).json()
        assert [row["worker_id"] for row in second_page["rows"]] == ["w-8", "w-quiet"]

        async def ids(**params: str) -> list[str]:
            found = (await http.get("/ui/api/workers", params=params)).json()
            return [row["worker_id"] for row in found["rows"]]

        assert await ids(mapping="endpoint_dependent") == ["w-1", "w-4", "w-7"]
        assert await ids(mapping="no_endpoint") == ["w-quiet"]
        assert await ids(tag="gpu") == ["w-0", "w-1"]
        assert await ids(q="203.0.113.5") == ["w-4"]
        assert await ids(q="QUIET") == ["w-quiet"]
        assert await ids(tag="gpu", mapping="unknown") == []

        before = (await http.get("/debug/list_workers")).json()
        for bad in ({"limit": "0"}, {"limit": "501"}, {"offset": "-1"}, {"mapping": "cone"}):
            refused = await http.get("/ui/api/workers", params=bad)
            assert refused.status_code == 400 and refused.json()["error"] == "bad_request", bad
        assert (await http.get("/debug/list_workers")).json() == before


class Changes:
    """The changes a Server-Sent Events stream delivers, one at a time (batches split)."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self._lines = lines
        self._waiting: list[dict[str, Any]] = []

    async def _next(self) -> dict[str, Any]:
        event = None
        while not self._waiting:
            line = await anext(self._lines)
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "changes":
                self._waiting.extend(json.loads(line.removeprefix("data: "))["changes"])
        return self._waiting.pop(0)

    async def next(self, wanted: str, within: float = LIVE_SEC, **fields: Any) -> dict[str, Any]:
        """The next change of kind `wanted` with `fields`, within `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                change = await self._next()
                if change["kind"] == wanted and all(change.get(k) == v for k, v in fields.items()):
                    return change


@contextlib.asynccontextmanager
async def live_stream(
    http: httpx.AsyncClient, server: RunningRendezvous | str
) -> AsyncIterator[Changes]:
    """A viewer of `server`'s stream (in this process: gone from it once the block ends)."""
    url = server if isinstance(server, str) else server.http_url
    async with http.stream("GET", f"{url}/ui/api/live") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        assert await anext(lines) == "retry: 1000"
        assert await anext(lines) == "event: hello"
        try:
            yield Changes(lines)
        finally:
            await lines.aclose()  # type: ignore[attr-defined]
    if not isinstance(server, str):
        feed = server.rendezvous.feed
        await eventually(lambda: feed.describe()["viewers"] == 0, what="the viewer gone")


async def test_the_live_stream_pushes_joins_moves_introductions_and_leaves() -> None:
    async with (
        running_rendezvous(config()) as server,
        httpx.AsyncClient(timeout=10) as http,
        live_stream(http, server) as changes,
    ):
        first = await register(server, "first", "203.0.113.1", "endpoint_independent")
        joined = await changes.next("worker_joined", worker_id="first")
        assert joined["tags"] == []
        second = await register(server, "second", "203.0.113.2", "endpoint_dependent")
        await ask(
            second,
            {
                "type": "update_udp_endpoint",
                "udp_ip": "203.0.113.9",
                "udp_port": 4001,
                "mapping": "endpoint_dependent",
            },
        )
        moved = await changes.next("endpoint_updated", worker_id="second", moved=True)
        assert moved["previous"] == "203.0.113.2:4000" and moved["endpoint"] == "203.0.113.9:4001"

        await first.send(json.dumps({"type": "connect_request", "peer_id": "second"}))
        introduced = await changes.next("introduced")
        assert (introduced["worker_id"], introduced["peer_id"]) == ("first", "second")
        picture = (await http.get(f"{server.http_url}/ui/api/paths")).json()
        assert picture["counts"]["punching"] == 1
        [session] = picture["sessions"]
        assert session["relay_first"] is True  # one side is endpoint-dependent

        await second.close()
        await changes.next("worker_left", worker_id="second")
        picture = (await http.get(f"{server.http_url}/ui/api/paths")).json()
        assert picture["active"] == 0
        detail = (await http.get(f"{server.http_url}/ui/api/workers/first")).json()
        assert detail["connected"] is True and detail["ended_sessions"][0]["responder"] == "second"
        kinds = [event["kind"] for event in detail["events"]]
        assert kinds == ["introduced", "endpoint_updated", "worker_joined"]  # newest first
        await first.close()
        registry = (await http.get(f"{server.http_url}/debug/registry")).json()
        assert registry["fleet_page"]["viewers"] == 1


@contextlib.asynccontextmanager
async def rendezvous_process(redis: RedisServer) -> AsyncIterator[RunningRendezvous | str]:
    port = free_tcp_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "AUTH_MODE": "none",
        "DEBUG_ENDPOINTS": "1",
        "REGISTRY_URL": redis.url,
        "REGISTRY_TTL_SEC": "3",
    }
    service = await start_service("holepunch_rendezvous", env)
    try:
        await service.wait_for_event("server_started", port=port)
        yield f"http://127.0.0.1:{port}"
    finally:
        assert await service.stop() == 0


async def test_the_live_feed_is_cluster_wide_through_redis(redis_server: RedisServer) -> None:
    """Two rendezvous processes sharing a redis-server: a viewer of one sees what happens
    on the other."""
    async with (
        rendezvous_process(redis_server) as watched,
        rendezvous_process(redis_server) as other_url,
        httpx.AsyncClient(timeout=10) as http,
        live_stream(http, watched) as changes,
    ):
        assert isinstance(watched, str) and isinstance(other_url, str)
        ws = await register(other_url, "elsewhere", "203.0.113.7", "endpoint_independent")
        await changes.next("worker_joined", worker_id="elsewhere")
        peer = await register(other_url, "elsewhere-too", "203.0.113.8", "endpoint_independent")
        await peer.send(json.dumps({"type": "connect_request", "peer_id": "elsewhere"}))
        await changes.next("introduced", worker_id="elsewhere-too")
        picture = (await http.get(f"{watched}/ui/api/paths")).json()
        assert [s["initiator"] for s in picture["sessions"]] == ["elsewhere-too"]
        assert (await http.get(f"{watched}/debug/sessions")).json()["active"] == {}
        await ws.close()
        await peer.close()
        await changes.next("worker_left", worker_id="elsewhere")
        registry = (await http.get(f"{other_url}/debug/registry")).json()
        # Each batch is PUBLISHed (batching itself: tests/unit/test_rendezvous_ui.py).
        assert 1 <= registry["round_trips"]["feed"] <= registry["fleet_page"]["changes_sent"]


async def test_a_taken_port_is_a_config_invalid_line_and_exit_status_2() -> None:
    port = free_tcp_port()
    holder = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        started = time.monotonic()
        service = await start_service(
            "holepunch_rendezvous", {"PORT": str(port), "HOST": "127.0.0.1", "AUTH_MODE": "none"}
        )
        assert await asyncio.wait_for(service.process.wait(), 15) == 2  # on its own
        await service.stop()  # reads the last lines
        assert time.monotonic() - started < 15
        [line] = [line for line in service.lines if line.get("event") == "config_invalid"]
        assert line["variable"] == "PORT" and "already in use" in line["reason"]
        assert line["severity"] == "ERROR"
        assert all(
            "event" in line or "logging.googleapis.com/diagnostic" in line for line in service.lines
        )
    finally:
        holder.close()
        await holder.wait_closed()


async def test_sigterm_ends_the_viewers_streams_and_the_process_exits_0() -> None:
    port = free_tcp_port()
    env = {"PORT": str(port), "HOST": "127.0.0.1", "AUTH_MODE": "none", "DEBUG_ENDPOINTS": "1"}
    service = await start_service("holepunch_rendezvous", env)
    try:
        await service.wait_for_event("server_started", port=port)
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream("GET", f"http://127.0.0.1:{port}/ui/api/live") as response,
        ):
            lines = response.aiter_lines()
            assert [await anext(lines) for _ in range(3)][:2] == ["retry: 1000", "event: hello"]
            started = time.monotonic()
            service.process.terminate()
            remaining = [line async for line in lines]  # the stream ends: no keep-alive wait
            assert all(not line.startswith("data:") for line in remaining)
        assert await service.stop(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        if service.process.returncode is None:
            service.process.kill()
            await service.process.wait()
