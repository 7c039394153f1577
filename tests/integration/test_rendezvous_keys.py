"""Worker keys against the real rendezvous (uvicorn on loopback, real WebSocket clients):
the impostor with the shared token, replayed and forged proofs, keyless workers, and an
operator's release. Each attack is refused and leaves the real worker as it was."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from holepunch_protocol import AuthMode, AuthProof
from holepunch_rendezvous.config import RendezvousConfig
from holepunch_worker.identity import WorkerKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.rendezvous import RunningRendezvous, ask, running_rendezvous
from tests.support.worker_keys import connect_with_key

TOKEN = "keys-test-token-" + "t" * 16
ADMIN = "keys-test-admin-" + "a" * 16
WORKER = {"Authorization": f"Bearer {TOKEN}"}
OPERATOR = {"Authorization": f"Bearer {ADMIN}"}


def token_config(**overrides: Any) -> RendezvousConfig:
    return RendezvousConfig(
        host="127.0.0.1",
        auth_mode=AuthMode.TOKEN,
        rendezvous_token=TOKEN,
        admin_token=ADMIN,
        debug_endpoints=True,
        introduction_policy="*",  # anyone may ask to reach anyone: keys are the subject here
        **overrides,
    )


@pytest.fixture
async def server() -> AsyncIterator[RunningRendezvous]:
    async with running_rendezvous(token_config()) as running:
        yield running


async def report_endpoint(ws: ClientConnection, port: int) -> None:
    update = {"type": "update_udp_endpoint", "udp_ip": "203.0.113.5", "udp_port": port}
    assert await ask(ws, update) == {"type": "udp_endpoint_ack", "status": "success"}


async def refused(ws: ClientConnection) -> tuple[str, int | None, str | None]:
    """The error frame's code, then the close code and reason, of a refused client."""
    error = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert error["type"] == "error", error
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    received = closed.value.rcvd
    return error["code"], received and received.code, received and received.reason


async def listing(server: RunningRendezvous) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.http_url}/debug/list_workers", headers=OPERATOR)
    assert response.status_code == 200
    workers: dict[str, Any] = response.json()["workers"]
    return workers


async def still_served(ws: ClientConnection) -> bool:
    reply = await ask(ws, {"type": "echo_request", "payload": "still here"})
    return reply["type"] == "echo_response"


async def test_an_impostor_with_the_token_but_another_key_is_refused_and_changes_nothing(
    server: RunningRendezvous,
) -> None:
    real_key, impostor_key, peer_key = (
        WorkerKey.generate(),
        WorkerKey.generate(),
        WorkerKey.generate(),
    )
    real, _ = await connect_with_key(server.ws_url("wA"), "wA", real_key, WORKER)
    peer, _ = await connect_with_key(server.ws_url("wB"), "wB", peer_key, WORKER)
    await report_endpoint(real, 4001)
    await report_endpoint(peer, 4002)
    before = server.rendezvous.registry.get("wA")
    assert before is not None
    snapshot = (before.connection_id, before.udp_endpoint, before.public_key)

    impostor, _ = await connect_with_key(server.ws_url("wA"), "wA", impostor_key, WORKER)
    code, close_code, reason = await refused(impostor)
    assert (code, close_code, reason) == (
        "worker_key_mismatch",
        4403,
        "worker_id is bound to another key",
    )

    after = server.rendezvous.registry.get("wA")
    assert after is before
    assert (after.connection_id, after.udp_endpoint, after.public_key) == snapshot
    assert await still_served(real)
    listed = (await listing(server))["wA"]
    assert listed["public_key"] == real_key.public_key
    assert listed["key_fingerprint"] == real_key.fingerprint
    assert listed["keyless"] is False
    # Introductions still reach the real worker, and name its key to the peer.
    await peer.send(json.dumps({"type": "connect_request", "peer_id": "wA"}))
    to_peer = json.loads(await asyncio.wait_for(peer.recv(), 5))
    to_real = json.loads(await asyncio.wait_for(real.recv(), 5))
    assert to_peer["peer_public_key"] == real_key.public_key
    assert to_real["peer_public_key"] == peer_key.public_key
    assert to_peer["peer_udp_port"] == 4001
    await real.close()
    await peer.close()


async def test_a_proof_replayed_from_an_earlier_connection_is_refused(
    server: RunningRendezvous,
) -> None:
    key = WorkerKey.generate()
    seen: list[AuthProof] = []

    def recorded(challenge: Any) -> AuthProof:
        seen.append(key.prove(challenge, "wA"))
        return seen[-1]

    first, first_challenge = await connect_with_key(
        server.ws_url("wA"), "wA", key, WORKER, prover=recorded
    )
    await report_endpoint(first, 4001)
    await first.close()  # the worker leaves; an eavesdropper kept its proof
    replay, second_challenge = await connect_with_key(
        server.ws_url("wA"),
        "wA",
        WorkerKey.generate(),
        WORKER,
        prover=lambda _: seen[0],
        announced_key=key.public_key,
    )
    assert second_challenge.nonce != first_challenge.nonce
    assert await refused(replay) == (
        "key_proof_invalid",
        4401,
        "the signature does not match the challenge and worker_id",
    )
    assert server.rendezvous.registry.get("wA") is None


async def test_forged_proofs_are_refused_and_register_nothing(server: RunningRendezvous) -> None:
    victim, attacker = WorkerKey.generate(), WorkerKey.generate()
    cases = {
        # The victim's key announced, signed with the attacker's.
        "wrong signature": dict(
            prover=lambda c: AuthProof(victim.public_key, attacker.prove(c, "wA").signature),
            announced_key=victim.public_key,
        ),
        # A true signature, made for another worker_id.
        "other worker_id": dict(prover=lambda c: attacker.prove(c, "wZ")),
        # The proof names a key other than the upgrade did.
        "switched key": dict(
            prover=lambda c: attacker.prove(c, "wA"), announced_key=victim.public_key
        ),
    }
    for name, options in cases.items():
        ws, _ = await connect_with_key(
            server.ws_url("wA"),
            "wA",
            attacker,
            WORKER,
            **options,  # type: ignore[arg-type]
        )
        code, close_code, _ = await refused(ws)
        assert (code, close_code) == ("key_proof_invalid", 4401), name
    assert server.rendezvous.registry.get("wA") is None
    assert len(server.rendezvous.store.bindings) == 0


async def test_nothing_is_read_before_the_proof(server: RunningRendezvous) -> None:
    key = WorkerKey.generate()
    ws = await connect(server.ws_url("wA"), additional_headers={**WORKER, **key.upgrade_headers()})
    challenge = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert challenge["type"] == "auth_challenge"
    assert "wA" not in await listing(server)  # not registered while the challenge waits
    await ws.send(json.dumps({"type": "update_udp_endpoint", "udp_ip": "1.2.3.4", "udp_port": 9}))
    code, close_code, reason = await refused(ws)
    assert (code, close_code) == ("key_proof_invalid", 4401)
    assert reason == "expected auth_proof before any other message, got update_udp_endpoint"
    assert server.rendezvous.registry.get("wA") is None


async def test_a_second_proof_after_registration_is_refused_and_changes_nothing(
    server: RunningRendezvous,
) -> None:
    key = WorkerKey.generate()
    ws, challenge = await connect_with_key(server.ws_url("wA"), "wA", key, WORKER)
    await report_endpoint(ws, 4001)
    again = key.prove(challenge, "wA").to_fields()
    reply = await ask(ws, again)
    assert reply["code"] == "key_proof_invalid"
    assert await still_served(ws)
    await ws.close()


async def test_keyless_workers_are_refused_unless_allowed(server: RunningRendezvous) -> None:
    async with connect(server.ws_url("old"), additional_headers=WORKER) as ws:
        assert await refused(ws) == ("keyless_not_allowed", 4401, "a worker key is required")
    assert server.rendezvous.registry.get("old") is None


async def test_allowed_keyless_workers_are_marked_and_never_take_a_bound_id() -> None:
    async with running_rendezvous(token_config(allow_keyless_workers=True)) as server:
        keyed_key = WorkerKey.generate()
        keyed, _ = await connect_with_key(server.ws_url("keyed"), "keyed", keyed_key, WORKER)
        await report_endpoint(keyed, 4001)
        old = await connect(server.ws_url("old"), additional_headers=WORKER)
        await report_endpoint(old, 4002)
        workers = await listing(server)
        assert workers["old"]["keyless"] is True
        assert workers["old"]["public_key"] is None and workers["old"]["key_fingerprint"] is None
        assert workers["keyed"]["keyless"] is False
        # Introductions name the keyless side's key as null.
        await keyed.send(json.dumps({"type": "connect_request", "peer_id": "old"}))
        assert json.loads(await asyncio.wait_for(keyed.recv(), 5))["peer_public_key"] is None
        intro = json.loads(await asyncio.wait_for(old.recv(), 5))
        assert intro["peer_public_key"] == keyed_key.public_key
        # A keyless client cannot use an id bound to a key.
        async with connect(server.ws_url("keyed"), additional_headers=WORKER) as impostor:
            assert (await refused(impostor))[:2] == ("worker_key_mismatch", 4403)
        assert await still_served(keyed)
        await keyed.close()
        await old.close()


async def test_an_operator_release_lets_a_new_key_claim_the_id(server: RunningRendezvous) -> None:
    lost, new = WorkerKey.generate(), WorkerKey.generate()
    ws, _ = await connect_with_key(server.ws_url("wA"), "wA", lost, WORKER)
    await report_endpoint(ws, 4001)
    await ws.close()  # the worker and its key are gone; the binding outlives them
    retry, _ = await connect_with_key(server.ws_url("wA"), "wA", new, WORKER)
    assert (await refused(retry))[:2] == ("worker_key_mismatch", 4403)

    url = f"{server.http_url}/admin/bindings/wA"
    async with httpx.AsyncClient() as client:
        assert (await client.delete(url, headers=WORKER)).status_code == 401
        released = await client.delete(url, headers=OPERATOR)
        assert released.status_code == 200
        assert released.json() == {
            "worker_id": "wA",
            "released_public_key": lost.public_key,
            "key_fingerprint": lost.fingerprint,
        }
        again = await client.delete(url, headers=OPERATOR)
        assert again.status_code == 404 and again.json()["error"] == "not_found"

    claimed, _ = await connect_with_key(server.ws_url("wA"), "wA", new, WORKER)
    await report_endpoint(claimed, 4003)
    assert (await listing(server))["wA"]["public_key"] == new.public_key
    await claimed.close()
