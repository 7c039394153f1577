"""Who is calling, and may they use this worker_id: pure logic, no I/O.

AUTH_MODE:
- `iam`: a Google-signed ID token, in `X-Serverless-Authorization` or `Authorization`.
  On Cloud Run with invoker IAM, Google's front end has checked it already; we check it
  again (signature, issuer, audience, expiry: `id_tokens.py`), then take the identity
  from its claims (the service account e-mail).
- `token`: a shared secret, `Authorization: Bearer <RENDEZVOUS_TOKEN>`, compared in
  constant time; for local runs and platforms without Google's front end.
- `none`: anyone is "anonymous"; development only.

A worker_id belongs to the identity that first registered it; another identity cannot
take it over while the binding lasts (it is renewed on every connection).
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from holepunch_protocol import AuthMode

__all__ = [
    "OWNERSHIP_TTL_SEC",
    "AuthError",
    "AuthMode",
    "IdTokenVerifier",
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
    close_reason: str = "authentication required"


# An ID token -> its claims once verified (id_tokens.verify_id_token), or AuthError.
IdTokenVerifier = Callable[[str], Mapping[str, Any]]


def bearer_token(headers: Mapping[str, str], header: str = "authorization") -> str | None:
    value = headers.get(header, "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _claims_identity(claims: Mapping[str, Any]) -> str:
    """The e-mail (or subject) a verified ID token names."""
    identity = claims.get("email")
    if not isinstance(identity, str) or not identity:
        identity = claims.get("sub")
    if not isinstance(identity, str) or not identity:
        raise AuthError("unauthenticated", "the ID token names no email or subject")
    return identity[:256]


def authenticate(
    mode: AuthMode,
    headers: Mapping[str, str],
    shared_token: str | None,
    verify_id_token: IdTokenVerifier | None = None,
) -> str:
    """The caller's identity, or AuthError. `verify_id_token` is required with `iam`."""
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
    if verify_id_token is None:
        raise AuthError("unauthenticated", "ID tokens cannot be verified here")
    # Cloud Run's front end checks the token in X-Serverless-Authorization when both headers
    # are sent (else the one in Authorization) and passes it on with its signature removed;
    # the other header reaches us as sent. So the worker sends its token in both, and the
    # first one that verifies here names the caller.
    candidates = dict.fromkeys(
        found
        for found in (token, bearer_token(headers, "x-serverless-authorization"))
        if found is not None
    )
    refusal = AuthError("unauthenticated", "no ID token")
    for candidate in candidates:
        try:
            return _claims_identity(verify_id_token(candidate))
        except AuthError as error:
            refusal = error
    raise refusal


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
