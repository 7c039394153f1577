"""AUTH_MODE=iam against forged tokens, on the real server with a stand-in certificate
source: every forgery is refused with 4401 while a connected worker carries on."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from holepunch_logging import RendezvousEvent
from holepunch_rendezvous.auth import AuthMode
from holepunch_rendezvous.config import RendezvousConfig
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.id_tokens import SigningKey, StandInIssuer, stand_in_issuer, unsigned_token
from tests.support.rendezvous import RunningRendezvous, eventually, running_rendezvous

EMAIL = "worker@p.iam.gserviceaccount.com"


@pytest.fixture
def issuer() -> Iterator[StandInIssuer]:
    with stand_in_issuer() as running:
        yield running


@pytest.fixture
async def iam_server(issuer: StandInIssuer) -> AsyncIterator[RunningRendezvous]:
    config = RendezvousConfig(
        host="127.0.0.1",
        auth_mode=AuthMode.IAM,
        iam_certs_url=issuer.certs_url,
        allow_keyless_workers=True,  # these clients speak the original, keyless protocol
    )
    async with running_rendezvous(config) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refusal(ws: ClientConnection) -> tuple[str, int | None, str | None]:
    reply = json.loads(await ws.recv())
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    received = closed.value.rcvd
    return reply["code"], received and received.code, received and received.reason


async def echo(ws: ClientConnection, payload: str) -> None:
    await ws.send(json.dumps({"type": "echo_request", "payload": payload}))
    reply = json.loads(await ws.recv())
    assert (reply["type"], reply["original_payload"]) == ("echo_response", payload)


async def test_forged_tokens_are_refused_and_disturb_nobody(
    iam_server: RunningRendezvous, issuer: StandInIssuer
) -> None:
    audience = iam_server.http_url
    other_key = SigningKey.generate("attacker-key")
    valid = issuer.token(EMAIL, audience)
    header, payload, signature = valid.split(".")
    now = int(time.time())
    forgeries = {
        "alg none": unsigned_token(issuer.claims(EMAIL, audience)),
        "garbage signature": f"{header}.{payload}.{'A' * len(signature)}",
        "another key, our key id": other_key.sign(
            issuer.claims(EMAIL, audience), key_id=issuer.key.key_id
        ),
        "another key": other_key.sign(issuer.claims(EMAIL, audience)),
        "expired": issuer.token(EMAIL, audience, iat=now - 7200, exp=now - 3600),
        "wrong audience": issuer.token(EMAIL, "https://another-service.example"),
        "wrong issuer": issuer.token(EMAIL, audience, iss="https://evil.example"),
    }
    async with connect(iam_server.ws_url("victim"), additional_headers=bearer(valid)) as victim:
        await echo(victim, "before")
        record = iam_server.rendezvous.registry.get("victim")
        assert record is not None
        for name, token in forgeries.items():
            # The impostor goes for the victim's own worker_id, in both headers.
            headers = {**bearer(token), "X-Serverless-Authorization": f"Bearer {token}"}
            async with connect(iam_server.ws_url("victim"), additional_headers=headers) as forged:
                code, close_code, _ = await refusal(forged)
            assert (code, close_code) == ("unauthenticated", 4401), name
            assert iam_server.rendezvous.registry.get("victim") is record, name
        await echo(victim, "after")
    assert iam_server.rendezvous.ownership.owner("victim", time.time()) == EMAIL


async def test_without_certificates_connections_are_refused_until_they_come(
    issuer: StandInIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.available = False
    config = RendezvousConfig(
        host="127.0.0.1",
        auth_mode=AuthMode.IAM,
        iam_certs_url=issuer.certs_url,
        allow_keyless_workers=True,  # these clients speak the original, keyless protocol
    )
    with caplog.at_level(logging.ERROR, "holepunch.rendezvous"):
        async with running_rendezvous(config) as server:
            token = issuer.token(EMAIL, server.http_url)
            async with connect(server.ws_url("w1"), additional_headers=bearer(token)) as ws:
                code, close_code, reason = await refusal(ws)
            assert (code, close_code, reason) == (
                "unauthenticated",
                4401,
                "ID token certificates unavailable",
            )
            assert len(server.rendezvous.registry) == 0
            issuer.available = True

            async def accepted() -> bool:
                async with connect(server.ws_url("w1"), additional_headers=bearer(token)) as ws:
                    try:
                        await echo(ws, "x")
                    except ConnectionClosed:  # refused again
                        return False
                    return True

            # The failed fetch is retried (no sooner than 5 s later), never a crash.
            await eventually(accepted, timeout=15, what="certificates fetched again")
    failures = [
        r.__dict__["json_fields"]
        for r in caplog.records
        if r.__dict__.get("json_fields", {}).get("event") == RendezvousEvent.ID_TOKEN_CERTS_FAILED
    ]
    assert failures and failures[0]["url"] == issuer.certs_url


@pytest.mark.parametrize(("k_service", "logged"), [(None, True), ("rendezvous", False)])
async def test_iam_outside_cloud_run_is_logged_at_start(
    issuer: StandInIssuer, caplog: pytest.LogCaptureFixture, k_service: str | None, logged: bool
) -> None:
    config = RendezvousConfig(
        host="127.0.0.1",
        auth_mode=AuthMode.IAM,
        iam_certs_url=issuer.certs_url,
        cloud_run_service=k_service,
    )
    with caplog.at_level(logging.WARNING, "holepunch.rendezvous"):
        async with running_rendezvous(config):
            pass
    events = [r.__dict__.get("json_fields", {}).get("event") for r in caplog.records]
    assert (RendezvousEvent.IAM_OUTSIDE_CLOUD_RUN in events) is logged
