"""The credentials a worker presents to the rendezvous on every (re)connect.

- AUTH_MODE=iam: a Google-signed ID token for the rendezvous URL, from the metadata server
  (through google-auth), cached and fetched again 5 minutes before it expires. The fetch
  is blocking HTTP, so it runs in a thread: the event loop never waits on it.
- AUTH_MODE=token: `Authorization: Bearer <RENDEZVOUS_TOKEN>`.
- AUTH_MODE=none: nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable

from holepunch_protocol import AuthMode

__all__ = ["CredentialsError", "RendezvousCredentials", "fetch_google_id_token"]

REFRESH_MARGIN_SEC = 300.0


class CredentialsError(RuntimeError):
    """No credentials could be obtained (the worker retries with backoff)."""


def fetch_google_id_token(audience: str) -> str:
    """Blocking: an ID token for `audience` from the environment's Google credentials."""
    import google.auth.exceptions
    import google.auth.transport.requests
    import google.oauth2.id_token

    try:
        token: str = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
            google.auth.transport.requests.Request(), audience
        )
    except google.auth.exceptions.GoogleAuthError as error:
        raise CredentialsError(f"cannot get an ID token for {audience}: {error}") from None
    return token


def _expiry(token: str) -> float:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return 0.0  # unknown: fetch again next time


class RendezvousCredentials:
    def __init__(
        self,
        mode: AuthMode,
        *,
        shared_token: str | None = None,
        audience: str | None = None,
        fetch_id_token: Callable[[str], str] = fetch_google_id_token,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode is AuthMode.TOKEN and not shared_token:
            raise ValueError("AUTH_MODE=token needs a token")
        if mode is AuthMode.IAM and not audience:
            raise ValueError("AUTH_MODE=iam needs an audience")
        self.mode = mode
        self._shared_token = shared_token
        self._audience = audience
        self._fetch = fetch_id_token
        self._clock = clock
        self._id_token: str | None = None
        self._expires_at = 0.0

    async def headers(self) -> dict[str, str]:
        if self.mode is AuthMode.NONE:
            return {}
        if self.mode is AuthMode.TOKEN:
            return {"Authorization": f"Bearer {self._shared_token}"}
        if self._id_token is None or self._clock() > self._expires_at - REFRESH_MARGIN_SEC:
            assert self._audience is not None
            token = await asyncio.to_thread(self._fetch, self._audience)
            self._id_token, self._expires_at = token, _expiry(token)
        # Cloud Run checks the token in X-Serverless-Authorization and passes it on with
        # its signature removed; the copy in Authorization reaches the rendezvous whole,
        # for it to verify too.
        bearer = f"Bearer {self._id_token}"
        return {"Authorization": bearer, "X-Serverless-Authorization": bearer}
