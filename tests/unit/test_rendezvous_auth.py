"""Identity from headers and worker_id ownership, with no sockets."""

from __future__ import annotations

import pytest
from holepunch_rendezvous.auth import (
    AuthError,
    AuthMode,
    WorkerOwnership,
    authenticate,
    is_admin,
)

TOKEN = "shared-token-0123456789"


def test_none_mode_is_anonymous() -> None:
    assert authenticate(AuthMode.NONE, {}, None) == "anonymous"


def test_token_mode() -> None:
    assert authenticate(AuthMode.TOKEN, {"authorization": f"Bearer {TOKEN}"}, TOKEN) == "token"
    for headers in ({}, {"authorization": f"Basic {TOKEN}"}, {"authorization": "Bearer nope"}):
        with pytest.raises(AuthError) as caught:
            authenticate(AuthMode.TOKEN, headers, TOKEN)
        assert caught.value.code == "unauthenticated"


def test_iam_mode_takes_the_identity_from_the_token_that_verifies() -> None:
    verified = {
        "good-token": {"email": "worker@p.iam.gserviceaccount.com", "sub": "123"},
        "subject-only": {"sub": "1234"},
        "no-identity": {"aud": "x"},
    }

    def verify(token: str) -> dict[str, object]:
        if token not in verified:
            raise AuthError("unauthenticated", f"{token} does not verify")
        return verified[token]

    def iam(headers: dict[str, str]) -> str:
        return authenticate(AuthMode.IAM, headers, None, verify)

    assert iam({"authorization": "Bearer good-token"}) == "worker@p.iam.gserviceaccount.com"
    # Cloud Run passes the token it checked on without its signature: the other header's
    # copy is the one that verifies, whichever header it is in.
    stripped = "good-token.SIGNATURE_REMOVED_BY_GOOGLE"
    assert (
        iam(
            {
                "x-serverless-authorization": "Bearer subject-only",
                "authorization": f"Bearer {stripped}",
            }
        )
        == "1234"
    )
    assert iam(
        {"x-serverless-authorization": f"Bearer {stripped}", "authorization": "Bearer good-token"}
    ) == ("worker@p.iam.gserviceaccount.com")
    for headers in (
        {},
        {"authorization": f"Bearer {stripped}"},
        {"authorization": "Bearer no-identity"},
    ):
        with pytest.raises(AuthError) as caught:
            iam(headers)
        assert caught.value.code == "unauthenticated"
    # Without a verifier nothing is accepted.
    with pytest.raises(AuthError):
        authenticate(AuthMode.IAM, {"authorization": "Bearer good-token"}, None)


def test_admin() -> None:
    admin = "admin-token-0123456789"
    assert is_admin(AuthMode.NONE, {}, None)
    assert is_admin(AuthMode.IAM, {"authorization": f"Bearer {admin}"}, admin)
    assert not is_admin(AuthMode.IAM, {"authorization": "Bearer wrong"}, admin)
    assert not is_admin(AuthMode.TOKEN, {"authorization": f"Bearer {admin}"}, None)


def test_ownership_binds_renews_and_expires() -> None:
    owners = WorkerOwnership(ttl=10.0, capacity=2)
    assert owners.claim("w1", "alice", now=0.0)
    assert not owners.claim("w1", "mallory", now=5.0)
    assert owners.claim("w1", "alice", now=9.0)  # renewed
    assert not owners.claim("w1", "mallory", now=18.0)
    assert owners.claim("w1", "mallory", now=19.5)  # alice's binding lapsed
    owners.claim("w2", "bob", now=20.0)
    owners.claim("w3", "carol", now=21.0)
    assert len(owners) == 2 and owners.owner("w1", now=21.0) is None  # oldest evicted
