"""The introduction policy on the real server (uvicorn on loopback, real WebSocket clients):
an introduction outside the policy is refused and disturbs no one, discovery lists only
allowed peers, a tag the operator does not allow is refused at registration, and a real
worker declares its tags and shows its peers on `GET /peers`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from holepunch_protocol import AuthMode
from holepunch_rendezvous.app import Rendezvous
from holepunch_rendezvous.config import RendezvousConfig
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.punch_workers import running_workers
from tests.support.rendezvous import RunningRendezvous, ask, running_rendezvous

TOKEN = "policy-test-token-0123456789"
ADMIN = "policy-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Each team reaches itself; team-a may also reach gpu workers (not the other way round).
POLICY = "team-a, team-b, team-a->gpu"


def token_config(policy: str | None = POLICY) -> RendezvousConfig:
    return RendezvousConfig(
        host="127.0.0.1",
        port=0,
        auth_mode=AuthMode.TOKEN,
        rendezvous_token=TOKEN,
        admin_token=ADMIN,
        debug_endpoints=True,
        introduction_policy=policy,
        allow_keyless_workers=True,  # these clients speak the original, keyless protocol
    )


@pytest.fixture
async def server() -> AsyncIterator[RunningRendezvous]:
    async with running_rendezvous(token_config()) as running:
        yield running


async def join(
    stack: AsyncExitStack, server: RunningRendezvous, worker_id: str, tags: str | None, port: int
) -> ClientConnection:
    """A worker with `tags`, connected, its endpoint acknowledged."""
    url = server.ws_url(worker_id) + ("" if tags is None else f"?tags={tags}")
    ws = await stack.enter_async_context(connect(url, additional_headers=AUTH))
    update = {
        "type": "update_udp_endpoint",
        "udp_ip": "203.0.113.9",
        "udp_port": port,
        "mapping": "endpoint_independent",
    }
    assert await ask(ws, update) == {"type": "udp_endpoint_ack", "status": "success"}
    return ws


def snapshot(rendezvous: Rendezvous) -> dict[str, Any]:
    return {record.worker_id: rendezvous.describe(record) for record in rendezvous.registry}


async def test_an_introduction_outside_the_policy_is_refused_and_the_victim_hears_nothing(
    server: RunningRendezvous, caplog: pytest.LogCaptureFixture
) -> None:
    rendezvous = server.rendezvous
    async with AsyncExitStack() as stack:
        attacker = await join(stack, server, "attacker", "team-a", 41001)
        victim = await join(stack, server, "victim", "team-b", 41002)
        before = snapshot(rendezvous)

        with caplog.at_level(logging.WARNING, logger="holepunch.rendezvous"):
            refusal = await ask(attacker, {"type": "connect_request", "peer_id": "victim"})
        assert refusal["type"] == "error" and refusal["code"] == "not_allowed"
        assert "victim" in refusal["detail"]
        # The attacker's next message is answered after every delivery of the refused one
        # was sent; the victim's first frame after that is its own answer, not an introduction.
        echoed = await ask(attacker, {"type": "echo_request", "payload": "after"})
        assert echoed["type"] == "echo_response"
        own = await ask(victim, {"type": "echo_request", "payload": "still here"})
        assert own["type"] == "echo_response" and own["original_payload"] == "still here"

        assert snapshot(rendezvous) == before
        assert len(rendezvous.sessions) == 0
        assert rendezvous.introductions_refused == {"not_allowed": 1}
        [logged] = [
            r.json_fields  # type: ignore[attr-defined]
            for r in caplog.records
            if r.json_fields["event"] == "introduction_rejected"  # type: ignore[attr-defined]
        ]
        assert logged["code"] == "not_allowed" and logged["peer_id"] == "victim"
        assert logged["tags"] == ["team-a"] and logged["peer_tags"] == ["team-b"]
        assert "policy" in logged["reason"]

        # Within the policy, the same attacker is introduced (team-a reaches gpu).
        await join(stack, server, "gpu-1", "gpu", 41003)
        introduced = await ask(attacker, {"type": "connect_request", "peer_id": "gpu-1"})
        assert introduced["type"] == "peer_introduction" and introduced["peer_id"] == "gpu-1"


async def test_an_untagged_worker_of_the_original_design_reaches_no_one_under_a_policy(
    server: RunningRendezvous,
) -> None:
    async with AsyncExitStack() as stack:
        await join(stack, server, "tagged", "team-a", 41011)
        legacy = await join(stack, server, "legacy", None, 41012)
        refusal = await ask(legacy, {"type": "connect_request", "peer_id": "tagged"})
        assert refusal["code"] == "not_allowed"
        assert await ask(legacy, {"type": "list_peers"}) == {
            "type": "peers",
            "peers": [],
            "next_cursor": None,
        }


async def test_discovery_never_lists_a_peer_outside_the_policy(server: RunningRendezvous) -> None:
    async with AsyncExitStack() as stack:
        asker = await join(stack, server, "a-1", "team-a", 42001)
        others = {}
        for number, (worker_id, tags) in enumerate(
            [
                ("a-2", "team-a"),
                ("b-1", "team-b"),
                ("g-1", "gpu"),
                ("u-1", None),
                ("a-3", "team-a"),
                ("g-2", "gpu,team-b"),
            ]
        ):
            others[worker_id] = await join(stack, server, worker_id, tags, 42002 + number)

        whole = await ask(asker, {"type": "list_peers", "request_id": 7})
        assert whole["request_id"] == 7 and whole["next_cursor"] is None
        assert whole["peers"] == [
            {"worker_id": "a-2", "tags": ["team-a"], "mapping": "endpoint_independent"},
            {"worker_id": "a-3", "tags": ["team-a"], "mapping": "endpoint_independent"},
            {"worker_id": "g-1", "tags": ["gpu"], "mapping": "endpoint_independent"},
            {"worker_id": "g-2", "tags": ["gpu", "team-b"], "mapping": "endpoint_independent"},
        ]
        # Page by page (two workers scanned at a time), the same peers and no others.
        paged: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            request: dict[str, Any] = {"type": "list_peers", "limit": 2}
            if cursor is not None:
                request["cursor"] = cursor
            page = await ask(asker, request)
            assert len(page["peers"]) <= 2
            paged += [peer["worker_id"] for peer in page["peers"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert paged == ["a-2", "a-3", "g-1", "g-2"] and pages == 4  # 8 workers, 2 a page

        # A gpu worker may be reached by team-a but reaches no one itself (no gpu rule);
        # b-1 sees g-2 (team-b) but not the team-a workers.
        assert (await ask(others["g-1"], {"type": "list_peers"}))["peers"] == []
        from_b = await ask(others["b-1"], {"type": "list_peers"})
        assert [peer["worker_id"] for peer in from_b["peers"]] == ["g-2"]

        bad = await ask(asker, {"type": "list_peers", "limit": 0})
        assert bad["code"] == "invalid_field"


async def test_a_tag_the_operator_does_not_allow_is_refused_at_registration(
    server: RunningRendezvous,
) -> None:
    before = snapshot(server.rendezvous)
    for query, code, close_code in [
        ("?tags=team-a,admins", "tag_not_allowed", 4422),
        ("?tags=Team-A", "invalid_field", 1008),
    ]:
        async with connect(server.ws_url("sneaky") + query, additional_headers=AUTH) as ws:
            refusal = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert refusal["type"] == "error" and refusal["code"] == code, refusal
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == close_code
        if code == "tag_not_allowed":
            assert "admins" in refusal["detail"] and "team-a" not in refusal["detail"]
    assert snapshot(server.rendezvous) == before


async def test_token_mode_without_a_policy_introduces_no_one() -> None:
    async with running_rendezvous(token_config(policy=None)) as server, AsyncExitStack() as stack:
        first = await join(stack, server, "first", "anything", 43001)
        await join(stack, server, "second", None, 43002)
        refusal = await ask(first, {"type": "connect_request", "peer_id": "second"})
        assert refusal["code"] == "not_allowed"
        assert (await ask(first, {"type": "list_peers"}))["peers"] == []


async def test_the_operator_introduces_across_the_policy_and_the_listing_shows_tags(
    server: RunningRendezvous,
) -> None:
    async with AsyncExitStack() as stack, httpx.AsyncClient(base_url=server.http_url) as http:
        a = await join(stack, server, "op-a", "team-a", 44001)
        b = await join(stack, server, "op-b", "team-b", 44002)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        listed = (await http.get("/debug/list_workers", headers=admin)).json()["workers"]
        assert listed["op-a"]["tags"] == ["team-a"] and listed["op-b"]["tags"] == ["team-b"]
        answer = await http.post(
            "/admin/introduce", json={"initiator": "op-a", "responder": "op-b"}, headers=admin
        )
        assert answer.status_code == 200, answer.text
        for ws, peer in ((a, "op-b"), (b, "op-a")):
            introduction = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert introduction["type"] == "peer_introduction" and introduction["peer_id"] == peer
        status = (await http.get("/debug/registry", headers=admin)).json()
        assert status["introduction_policy"] == POLICY


async def test_a_real_worker_declares_its_tags_and_shows_its_peers() -> None:
    async with running_rendezvous(token_config()) as server:
        url = server.http_url
        env = {"AUTH_MODE": "token", "RENDEZVOUS_TOKEN": TOKEN}
        async with running_workers(
            url,
            ("w-a1", {**env, "WORKER_TAGS": "team-a"}),
            ("w-a2", {**env, "WORKER_TAGS": "team-a"}),
            ("w-b1", {**env, "WORKER_TAGS": "team-b"}),
        ) as (a1, _a2, _b1):
            for worker in (a1, _a2, _b1):
                await worker.log.wait_for_event("endpoint_ack", status="success")
            async with httpx.AsyncClient(timeout=10) as http:
                peers = await http.get(a1.http_url + "/peers")
                paged = await http.get(a1.http_url + "/peers?limit=1")
                bad = await http.get(a1.http_url + "/peers?limit=0")
                wrong_method = await http.post(a1.http_url + "/peers")
            assert peers.status_code == 200, peers.text
            [peer] = peers.json()["peers"]
            assert peers.json()["next_cursor"] is None
            assert (peer["worker_id"], peer["tags"]) == ("w-a2", ["team-a"])
            assert paged.json() == {"peers": [], "next_cursor": "w-a1"}  # w-a1 is the asker
            assert bad.status_code == 400 and wrong_method.status_code == 405
            assert (await a1.status())["tags"] == ["team-a"]
