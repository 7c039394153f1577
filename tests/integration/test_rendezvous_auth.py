"""Who may connect, who may use a worker_id, who may see the registry, and how fast."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from holepunch_rendezvous.auth import AuthMode
from holepunch_rendezvous.config import RendezvousConfig
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.id_tokens import stand_in_issuer
from tests.support.rendezvous import RunningRendezvous, running_rendezvous

TOKEN = "worker-token-" + "x" * 20
ADMIN = "admin-token-" + "y" * 20


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refused(ws: ClientConnection) -> tuple[str, int | None]:
    reply = json.loads(await ws.recv())
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    return reply["code"], None if closed.value.rcvd is None else closed.value.rcvd.code


@pytest.fixture
async def token_server() -> AsyncIterator[RunningRendezvous]:
    config = RendezvousConfig(
        host="127.0.0.1",
        auth_mode=AuthMode.TOKEN,
        rendezvous_token=TOKEN,
        admin_token=ADMIN,
        debug_endpoints=True,
        allow_keyless_workers=True,  # these clients speak the original, keyless protocol
    )
    async with running_rendezvous(config) as running:
        yield running


async def test_token_mode_needs_the_token(token_server: RunningRendezvous) -> None:
    url = token_server.ws_url("w1")
    async with connect(url) as anonymous:
        assert await refused(anonymous) == ("unauthenticated", 4401)
    async with connect(url, additional_headers=bearer("wrong-" + TOKEN)) as wrong:
        assert await refused(wrong) == ("unauthenticated", 4401)
    assert len(token_server.rendezvous.registry) == 0
    async with connect(url, additional_headers=bearer(TOKEN)) as ws:
        await ws.send(json.dumps({"type": "echo_request", "payload": "in"}))
        assert json.loads(await ws.recv())["type"] == "echo_response"


async def test_operator_endpoints_need_the_admin_token(token_server: RunningRendezvous) -> None:
    async with httpx.AsyncClient(base_url=token_server.http_url) as http:
        for path in ("/debug/list_workers", "/debug/sessions"):
            assert (await http.get(path)).status_code == 401
            assert (await http.get(path, headers=bearer(TOKEN))).status_code == 401
            assert (await http.get(path, headers=bearer(ADMIN))).status_code == 200
        introduce = await http.post("/admin/introduce", json={"initiator": "a", "responder": "b"})
        assert introduce.status_code == 401
        root = (await http.get("/")).json()
    assert "workers" not in json.dumps(root).replace("/debug/list_workers", "")


async def test_debug_endpoints_are_off_unless_enabled() -> None:
    config = RendezvousConfig(host="127.0.0.1", auth_mode=AuthMode.NONE)
    async with running_rendezvous(config) as server:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            response = await http.get("/debug/list_workers")
    assert response.status_code == 404
    assert "DEBUG_ENDPOINTS" in response.json()["detail"]


async def test_a_worker_id_belongs_to_the_identity_that_first_registered_it() -> None:
    with stand_in_issuer() as issuer:
        config = RendezvousConfig(
            host="127.0.0.1",
            auth_mode=AuthMode.IAM,
            debug_endpoints=True,
            iam_certs_url=issuer.certs_url,
            allow_keyless_workers=True,  # these clients speak the original, keyless protocol
        )
        async with running_rendezvous(config) as server:
            url = server.ws_url("w1")
            owner = bearer(issuer.token("worker@p.iam.gserviceaccount.com", server.http_url))
            intruder = bearer(issuer.token("intruder@p.iam.gserviceaccount.com", server.http_url))
            first = await connect(url, additional_headers=owner)
            await first.send(
                json.dumps({"type": "update_udp_endpoint", "udp_ip": "203.0.113.1", "udp_port": 9})
            )
            assert json.loads(await first.recv())["status"] == "success"
            async with connect(url, additional_headers=intruder) as other:
                assert await refused(other) == ("worker_id_taken", 4403)
            record = server.rendezvous.registry.get("w1")
            assert record is not None and record.udp_endpoint is not None  # untouched
            async with connect(url, additional_headers=bearer("not-a-jwt")) as garbled:
                assert await refused(garbled) == ("unauthenticated", 4401)
            # The same identity reconnecting replaces its old connection, as before.
            async with connect(url, additional_headers=owner):
                with pytest.raises(ConnectionClosed) as closed:
                    await first.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
            await first.close()


async def test_message_rate_limit_answers_but_keeps_the_connection() -> None:
    config = RendezvousConfig(host="127.0.0.1", max_messages_per_sec=5, debug_endpoints=True)
    async with running_rendezvous(config) as server:
        async with connect(server.ws_url("flood")) as flood, connect(server.ws_url("calm")) as calm:
            echo = json.dumps({"type": "echo_request", "payload": "x"})
            for _ in range(40):
                await flood.send(echo)
            replies = [json.loads(await flood.recv()) for _ in range(40)]
            kinds = {reply["type"] for reply in replies}
            limited = [reply for reply in replies if reply.get("code") == "rate_limited"]
            assert kinds == {"echo_response", "error"} and len(limited) >= 20
            await calm.send(echo)
            assert json.loads(await calm.recv())["type"] == "echo_response"


async def test_connections_per_address_are_limited() -> None:
    config = RendezvousConfig(host="127.0.0.1", max_connections_per_address=2)
    async with running_rendezvous(config) as server:
        async with connect(server.ws_url("a")), connect(server.ws_url("b")):
            async with connect(server.ws_url("c")) as third:
                assert await refused(third) == ("too_many_connections", 4429)
        assert len(server.rendezvous.registry) <= 2
