"""Who is calling, and may they use this worker_id: pure logic, no I/O.

AUTH_MODE:
- `iam`: on Cloud Run with invoker IAM, Google's front end has verified the caller's
  Google-signed ID token before the request reaches us and passes it on, in
  `X-Serverless-Authorization` or `Authorization`. We only read its claims (the service
  account e-mail). Never use this mode where no such front end stands before the service.
- `token`: a shared secret, `Authorization: Bearer <RENDEZVOUS_TOKEN>`, compared in
  constant time; for local runs and platforms without Google's front end.
- `none`: anyone is "anonymous"; development only.

A worker_id belongs to the identity that first registered it; another identity cannot
take it over while the binding lasts (it is renewed on every connection).
"""

from __future__ import annotations

import base64
import hmac
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from holepunch_protocol import AuthMode

__all__ = [
    "OWNERSHIP_TTL_SEC",
    "AuthError",
    "AuthMode",
    "WorkerOwnership",
    "authenticate",
    "bearer_token",
    "is_admin",
]


ANONYMOUS = "anonymous"
# How long a worker_id stays bound to its identity after its last connection ended, in
# this process's table and in the shared registry alike.
OWNERSHIP_TTL_SEC = 86_400.0
SHARED_TOKEN_IDENTITY = "token"


@dataclass(frozen=True, slots=True)
class AuthError(Exception):
    code: str  # "unauthenticated" | "forbidden"
    detail: str


def bearer_token(headers: Mapping[str, str], header: str = "authorization") -> str | None:
    value = headers.get(header, "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _jwt_identity(token: str) -> str:
    """The e-mail (or subject) in an ID token the front end already verified."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("unauthenticated", "the bearer token is not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        raise AuthError("unauthenticated", "the bearer token's claims are unreadable") from None
    identity = claims.get("email") if isinstance(claims, dict) else None
    if not isinstance(identity, str) or not identity:
        identity = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(identity, str) or not identity:
        raise AuthError("unauthenticated", "the ID token names no email or subject")
    return identity[:256]


def authenticate(mode: AuthMode, headers: Mapping[str, str], shared_token: str | None) -> str:
    """The caller's identity, or AuthError."""
    if mode is AuthMode.NONE:
        return ANONYMOUS
    token = bearer_token(headers) or bearer_token(headers, "x-serverless-authorization")
    if token is None:
        raise AuthError("unauthenticated", "missing 'Authorization: Bearer' header")
    if mode is AuthMode.TOKEN:
        assert shared_token is not None  # config guarantees it
        if not hmac.compare_digest(token.encode(), shared_token.encode()):
            raise AuthError("unauthenticated", "wrong token")
        return SHARED_TOKEN_IDENTITY
    # Cloud Run's front end takes the IAM token from X-Serverless-Authorization when both
    # headers are sent, which leaves Authorization to the application (the admin token).
    return _jwt_identity(bearer_token(headers, "x-serverless-authorization") or token)


def is_admin(mode: AuthMode, headers: Mapping[str, str], admin_token: str | None) -> bool:
    if mode is AuthMode.NONE:
        return True
    token = bearer_token(headers)
    return (
        admin_token is not None
        and token is not None
        and hmac.compare_digest(token.encode(), admin_token.encode())
    )


class WorkerOwnership:
    """worker_id -> identity, kept `ttl` seconds after last use, at most `capacity` ids."""

    def __init__(self, ttl: float = OWNERSHIP_TTL_SEC, capacity: int = 1_000_000) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._owners: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owners)

    def owner(self, worker_id: str, now: float) -> str | None:
        self._expire(now)
        entry = self._owners.get(worker_id)
        return None if entry is None else entry[0]

    def claim(self, worker_id: str, identity: str, now: float) -> bool:
        """Bind worker_id to identity (or renew the binding); False if another owns it."""
        owner = self.owner(worker_id, now)
        if owner is not None and owner != identity:
            return False
        self._owners[worker_id] = (identity, now)
        self._owners.move_to_end(worker_id)
        while len(self._owners) > self._capacity:
            self._owners.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        # Oldest first: stop at the first binding still alive.
        while self._owners:
            worker_id, (_, last_used) = next(iter(self._owners.items()))
            if now - last_used < self._ttl:
                return
            del self._owners[worker_id]
