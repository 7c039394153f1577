"""What a worker presents to the rendezvous, per AUTH_MODE, with no network."""

from __future__ import annotations

import time

import pytest
from holepunch_protocol import AuthMode, CloseCode
from holepunch_worker.backoff import SessionEnd, after_session
from holepunch_worker.config import ConfigError, load_config
from holepunch_worker.credentials import RendezvousCredentials

from tests.support.metadata_server import unsigned_id_token

BASE = {"RENDEZVOUS_SERVICE_URL": "wss://rendezvous-abc.a.run.app", "WORKER_ID": "w1"}


def test_auth_config() -> None:
    assert load_config(BASE).auth_mode is AuthMode.NONE
    iam = load_config({**BASE, "AUTH_MODE": "iam"})
    assert (iam.auth_mode, iam.id_token_audience) == (
        AuthMode.IAM,
        "https://rendezvous-abc.a.run.app",
    )
    token = load_config({**BASE, "AUTH_MODE": "TOKEN", "RENDEZVOUS_TOKEN": "t" * 16})
    assert (token.auth_mode, token.rendezvous_token) == (AuthMode.TOKEN, "t" * 16)
    for env, variable in [
        ({"AUTH_MODE": "kerberos"}, "AUTH_MODE"),
        ({"AUTH_MODE": "token"}, "RENDEZVOUS_TOKEN"),
        ({"AUTH_MODE": "token", "RENDEZVOUS_TOKEN": "short"}, "RENDEZVOUS_TOKEN"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_config({**BASE, **env})
        assert caught.value.variable == variable


async def test_headers_per_mode() -> None:
    assert await RendezvousCredentials(AuthMode.NONE).headers() == {}
    shared = RendezvousCredentials(AuthMode.TOKEN, shared_token="s" * 16)
    assert await shared.headers() == {"Authorization": "Bearer " + "s" * 16}


async def test_id_token_is_cached_and_fetched_again_before_it_expires() -> None:
    now = [1_000_000.0]
    fetched: list[str] = []

    def fetch(audience: str) -> str:
        fetched.append(audience)
        return unsigned_id_token("w@p.iam.gserviceaccount.com", audience, lifetime=3600)

    credentials = RendezvousCredentials(
        AuthMode.IAM, audience="https://r.example", fetch_id_token=fetch, clock=lambda: now[0]
    )
    now[0] = time.time()
    first = await credentials.headers()
    assert first["Authorization"].startswith("Bearer ey")
    # Cloud Run checks (and strips the signature of) the copy in X-Serverless-Authorization;
    # the one in Authorization reaches the rendezvous whole, for it to verify.
    assert first["X-Serverless-Authorization"] == first["Authorization"]
    now[0] += 3000  # 10 minutes before expiry: still good
    assert await credentials.headers() == first
    now[0] += 400  # inside the 5-minute margin: fetch again
    await credentials.headers()
    assert fetched == ["https://r.example", "https://r.example"]


def test_refusals_wait_the_longest_delay() -> None:
    for code in (CloseCode.UNAUTHENTICATED, CloseCode.FORBIDDEN, CloseCode.TOO_MANY_CONNECTIONS):
        assert after_session(0.1, code) is SessionEnd.REFUSED
        assert after_session(3600, code) is SessionEnd.REFUSED
