"""The worker's HTTP API against a real rendezvous: `POST /peers/{id}/connect` answers with
the rendezvous's reason, `/readyz` waits for a STUN answer or the rendezvous's ack, a
worker whose STUN servers never answer says so (in its log, at a bounded rate, and on
/status), and unknown routes and wrong methods are answered in JSON."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from holepunch_rendezvous.config import RendezvousConfig

from tests.support.punch_workers import running_workers
from tests.support.rendezvous import running_rendezvous

A, B, C = "http-a", "http-b", "http-c"


@contextmanager
def silent_stun_server() -> Iterator[str]:
    """A UDP socket that takes STUN requests and never answers; yields STUN_SERVERS."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        host, port = sink.getsockname()
        yield f"{host}:{port}"


async def test_connect_answers_with_the_rendezvous_reason() -> None:
    config = RendezvousConfig(
        host="127.0.0.1", port=0, debug_endpoints=True, introduction_policy="team-a"
    )
    async with (
        running_rendezvous(config) as server,
        running_workers(
            server.http_url,
            (A, {"WORKER_TAGS": "team-a"}),
            (B, {"WORKER_TAGS": "team-a"}),
            (C, {}),
        ) as (a, b, c),
    ):
        for worker in (a, b, c):
            await worker.log.wait_for_event("endpoint_ack", status="success")

        unknown = await a.post("/peers/nobody/connect")
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"] == "peer_not_found"
        assert unknown.json()["peer_id"] == "nobody" and "nobody" in unknown.json()["detail"]
        refused = await a.post(f"/peers/{C}/connect")
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "not_allowed"
        itself = await a.post(f"/peers/{A}/connect")
        assert (itself.status_code, itself.json()["error"]) == (400, "self_introduction")
        assert (await a.status())["sessions"] == []  # refusals made nothing

        introduced = await a.post(f"/peers/{B}/connect")
        assert introduced.status_code == 202, introduced.text
        body = introduced.json()
        assert body["status"] == "punching" and body["session"]["peer_id"] == B
        assert body["session"]["state"] == "punching"
        [requested] = a.log.named("connect_requested", peer_id=B, source="http")
        assert isinstance(requested["request_id"], int)
        await a.log.wait_for_event("punch_connected", peer_id=B)
        assert (await a.session_with(B))["session_id"] == body["session"]["session_id"]

        # Asked again while the session has a path: that session, not a new introduction
        # (which would replace it and reset the data-plane streams open on it), from either side.
        for asker, peer in ((a, B), (b, A)):
            again = await asker.post(f"/peers/{peer}/connect")
            assert again.status_code == 200, again.text
            assert again.json()["status"] == "connected"
            assert again.json()["session"]["session_id"] == body["session"]["session_id"]
        assert len(a.log.named("connect_requested", peer_id=B)) == 1
        assert b.log.named("connect_requested") == []
        assert (await a.session_with(B))["session_id"] == body["session"]["session_id"]


async def test_connect_without_the_rendezvous_is_503() -> None:
    async with running_rendezvous() as server, running_workers(server.http_url, (A, {})) as [a]:
        await a.log.wait_for_event("endpoint_ack", status="success")
        server.server.should_exit = True
        await a.log.wait_for_event("rendezvous_disconnected")
        answer = await a.post(f"/peers/{B}/connect")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "rendezvous_unavailable"


async def test_readyz_once_stun_answered_and_unknown_routes_in_json() -> None:
    async with running_rendezvous() as server, running_workers(server.http_url, (A, {})) as [a]:
        await a.log.wait_for_event("mapping_classified")
        async with httpx.AsyncClient(base_url=a.http_url, timeout=10) as client:
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
            missing = await client.post("/no/such/route")
            assert missing.status_code == 404
            assert missing.json() == {"error": "not_found", "path": "/no/such/route"}
            wrong = await client.delete("/status")
            assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"
            assert wrong.json()["error"] == "method_not_allowed"
            wrong = await client.get(f"/peers/{B}/connect")
            assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
            assert wrong.json() == {
                "error": "method_not_allowed",
                "method": "GET",
                "allowed": ["POST"],
            }
        status = await a.status()
        assert status["ready"] is True and status["endpoint_problem"] is None
        assert status["peer_connections"] == []


async def test_a_worker_whose_stun_servers_never_answer_says_why_at_a_bounded_rate() -> None:
    with silent_stun_server() as silent:
        env = {"STUN_SERVERS": silent, "STUN_RETRANSMISSIONS": "0", "STUN_REFRESH_SEC": "0.1"}
        async with (
            running_rendezvous() as server,
            running_workers(server.http_url, (A, env)) as [a],
        ):
            rounds = 4
            await a.log.wait_for(
                lambda: len(a.log.named("stun_failed")) >= rounds, what=f"{rounds} STUN rounds"
            )
            [logged] = a.log.named("no_endpoint")  # once, however many rounds fail
            assert logged["rounds"] == 1 and logged["unlogged"] == 0
            assert silent in logged["reason"] and "no response" in logged["reason"]
            status = await a.status()
            problem = status["endpoint_problem"]
            assert problem["unanswered_rounds"] >= rounds
            assert problem["reason"] == logged["reason"]
            assert problem["reporting_last_known_endpoint"] is False
            assert status["ready"] is False and status["udp_mapped"] is None
            async with httpx.AsyncClient(timeout=10) as client:
                ready = await client.get(a.http_url + "/readyz")
            assert ready.status_code == 503
            assert ready.json()["reason"] == "no_stun_answer"
            assert silent in ready.json()["detail"]
            assert a.log.named("endpoint_reported") == []
