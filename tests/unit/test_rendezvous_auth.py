"""Identity from headers and worker_id ownership, with no sockets."""

from __future__ import annotations

import base64
import json

import pytest
from holepunch_rendezvous.auth import (
    AuthError,
    AuthMode,
    WorkerOwnership,
    authenticate,
    is_admin,
)

TOKEN = "shared-token-0123456789"


def jwt(claims: dict[str, object], signature: str = "sig") -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.{signature}"


def test_none_mode_is_anonymous() -> None:
    assert authenticate(AuthMode.NONE, {}, None) == "anonymous"


def test_token_mode() -> None:
    assert authenticate(AuthMode.TOKEN, {"authorization": f"Bearer {TOKEN}"}, TOKEN) == "token"
    for headers in ({}, {"authorization": f"Basic {TOKEN}"}, {"authorization": "Bearer nope"}):
        with pytest.raises(AuthError) as caught:
            authenticate(AuthMode.TOKEN, headers, TOKEN)
        assert caught.value.code == "unauthenticated"


def test_iam_mode_reads_the_verified_token_claims() -> None:
    token = jwt({"email": "worker@p.iam.gserviceaccount.com", "sub": "123"})
    assert authenticate(AuthMode.IAM, {"authorization": f"Bearer {token}"}, None) == (
        "worker@p.iam.gserviceaccount.com"
    )
    # The front end may strip the signature; the IAM token may come in its own header.
    stripped = jwt({"sub": "1234"}, signature="")
    headers = {"x-serverless-authorization": f"Bearer {stripped}", "authorization": "Bearer x"}
    assert authenticate(AuthMode.IAM, headers, None) == "1234"
    for bad in ("a.b", "a.!!!.c", jwt({"aud": "no identity"})):
        with pytest.raises(AuthError):
            authenticate(AuthMode.IAM, {"authorization": f"Bearer {bad}"}, None)


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
