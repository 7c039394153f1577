"""ID token verification and the certificate cache, with no sockets (a stand-in key)."""

from __future__ import annotations

import logging
import time

import pytest
from holepunch_logging import RendezvousEvent
from holepunch_rendezvous.auth import AuthError
from holepunch_rendezvous.id_tokens import (
    DEFAULT_CERTS_MAX_AGE_SEC,
    CertificateCache,
    accepted_audiences,
    cache_max_age,
    verify_id_token,
)

from tests.support.id_tokens import SigningKey, StandInIssuer, unsigned_token

AUDIENCE = "https://rendezvous.example"
EMAIL = "worker@p.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def issuer() -> StandInIssuer:
    return StandInIssuer(SigningKey.generate("key-1"))


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate("key-2")


def certificates(issuer: StandInIssuer) -> dict[str, str]:
    return {issuer.key.key_id: issuer.key.certificate_pem}


def test_a_valid_token_gives_its_claims(issuer: StandInIssuer) -> None:
    claims = verify_id_token(issuer.token(EMAIL, AUDIENCE), certificates(issuer), (AUDIENCE,))
    assert claims["email"] == EMAIL
    # The other issuer spelling Google uses is accepted too.
    token = issuer.token(EMAIL, AUDIENCE, iss="accounts.google.com")
    assert verify_id_token(token, certificates(issuer), (AUDIENCE,))["email"] == EMAIL


def forged_tokens(issuer: StandInIssuer, other_key: SigningKey) -> dict[str, str]:
    valid = issuer.token(EMAIL, AUDIENCE)
    header, payload, signature = valid.split(".")
    now = int(time.time())
    return {
        "unsigned": unsigned_token(issuer.claims(EMAIL, AUDIENCE)),
        "garbage signature": f"{header}.{payload}.{'A' * len(signature)}",
        "no signature": f"{header}.{payload}.",
        "signed by another key under our key id": other_key.sign(
            issuer.claims(EMAIL, AUDIENCE), key_id=issuer.key.key_id
        ),
        "signed by an unknown key": other_key.sign(issuer.claims(EMAIL, AUDIENCE)),
        "expired": issuer.token(EMAIL, AUDIENCE, iat=now - 7200, exp=now - 3600),
        "issued in the future": issuer.token(EMAIL, AUDIENCE, iat=now + 3600, exp=now + 7200),
        "wrong audience": issuer.token(EMAIL, "https://other-service.example"),
        "wrong issuer": issuer.token(EMAIL, AUDIENCE, iss="https://evil.example"),
        "no expiry": issuer.key.sign(
            {k: v for k, v in issuer.claims(EMAIL, AUDIENCE).items() if k != "exp"}
        ),
        "not a JWT": "not-a-jwt",
        "unreadable claims": f"{header}.!!!.{signature}",
    }


def test_forged_or_stale_tokens_are_refused(issuer: StandInIssuer, other_key: SigningKey) -> None:
    for name, token in forged_tokens(issuer, other_key).items():
        with pytest.raises(AuthError) as caught:
            verify_id_token(token, certificates(issuer), (AUDIENCE,))
        assert caught.value.code == "unauthenticated", name


def test_no_audience_to_check_refuses(issuer: StandInIssuer) -> None:
    with pytest.raises(AuthError):
        verify_id_token(issuer.token(EMAIL, AUDIENCE), certificates(issuer), ())


def test_accepted_audiences() -> None:
    assert accepted_audiences(("https://a.example",), "b.example") == ("https://a.example",)
    assert accepted_audiences((), "r-123.run.app") == (
        "https://r-123.run.app",
        "http://r-123.run.app",
    )
    assert accepted_audiences((), None) == ()


def test_cache_max_age() -> None:
    assert cache_max_age("public, max-age=20586, must-revalidate, no-transform") == 20586
    assert cache_max_age("max-age=5") == 60  # never refetched more than once a minute
    assert cache_max_age(None) == DEFAULT_CERTS_MAX_AGE_SEC
    assert cache_max_age("no-cache, s-maxage=100") == DEFAULT_CERTS_MAX_AGE_SEC


class FakeFetch:
    def __init__(self) -> None:
        self.calls = 0
        self.failing = False
        self.answer = ({"k": "pem-1"}, 600.0)

    def __call__(self, url: str) -> tuple[dict[str, str], float]:
        self.calls += 1
        if self.failing:
            raise OSError("connection refused")
        return self.answer


async def test_the_cache_fetches_keeps_and_refreshes(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    fetch = FakeFetch()
    cache = CertificateCache("http://certs", fetch=fetch, retry_after_sec=5.0, clock=lambda: now[0])
    fetch.failing = True
    with caplog.at_level(logging.ERROR, "holepunch.rendezvous"):
        assert await cache.certificates() is None
    logged = [record.__dict__["json_fields"] for record in caplog.records]
    assert [fields["event"] for fields in logged] == [RendezvousEvent.ID_TOKEN_CERTS_FAILED]
    assert logged[0]["url"] == "http://certs" and "connection refused" in logged[0]["reason"]
    with pytest.raises(AuthError) as caught:
        await cache.verifier((AUDIENCE,))
    assert caught.value.close_reason == "ID token certificates unavailable"
    assert fetch.calls == 1  # within the retry delay: not fetched again
    now[0] = 5.0
    fetch.failing = False
    assert await cache.certificates() == {"k": "pem-1"}
    assert fetch.calls == 2
    now[0] = 600.0  # fresh until 605
    assert await cache.certificates() == {"k": "pem-1"} and fetch.calls == 2
    fetch.answer = ({"k": "pem-2"}, 600.0)
    now[0] = 606.0
    assert await cache.certificates() == {"k": "pem-2"} and fetch.calls == 3
    # A refresh that fails keeps the certificates it had, and waits before trying again.
    now[0] = 1300.0
    fetch.failing = True
    assert await cache.certificates() == {"k": "pem-2"} and fetch.calls == 4
    assert await cache.certificates() == {"k": "pem-2"} and fetch.calls == 4
    assert cache.fetch_failures == 2
