"""AUTH_MODE=iam: verify a Google-signed ID token here, not only in Cloud Run's front end.

`verify_id_token` is pure (the certificates and accepted audiences are passed in) and
checks, with google-auth: the RS256 signature against Google's certificates (`alg: none`
and any other algorithm are refused), the issuer, the audience, and `iat`/`exp`.

`CertificateCache` owns the I/O: Google's certificates (key id -> PEM, the v1 format at
`IAM_CERTS_URL`), fetched in a thread, kept as long as the response's Cache-Control
max-age says, refetched after that. A failed fetch is logged and retried no sooner than
`retry_after_sec` later; until the first success there are no certificates, and callers
refuse the connection (4401) rather than accept an unverified token. After a success,
a failed refresh keeps the previous certificates: Google publishes a key well before it
signs with it and keeps it published after.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import google.auth.jwt
from holepunch_logging import RendezvousEvent, log_event

from holepunch_rendezvous.auth import AuthError, IdTokenVerifier

__all__ = [
    "GOOGLE_CERTS_URL",
    "GOOGLE_ISSUERS",
    "CertificateCache",
    "Certificates",
    "accepted_audiences",
    "cache_max_age",
    "fetch_certificates",
    "verify_id_token",
]

logger = logging.getLogger("holepunch.rendezvous")

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
# Without a usable max-age; Google's own answers say about 5 to 7 hours.
DEFAULT_CERTS_MAX_AGE_SEC = 3600.0
MIN_CERTS_MAX_AGE_SEC = 60.0
CERTS_FETCH_TIMEOUT_SEC = 10.0
CERTS_RETRY_AFTER_SEC = 5.0
# Between this process's clock and Google's.
CLOCK_SKEW_SEC = 30
MAX_AGE_PATTERN = re.compile(r"(?:^|[,\s])max-age=([0-9]{1,9})(?:$|[,\s])")

Certificates = Mapping[str, str]


def cache_max_age(cache_control: str | None) -> float:
    """How long a certificates response may be kept, from its Cache-Control header."""
    match = MAX_AGE_PATTERN.search((cache_control or "").lower())
    if match is None:
        return DEFAULT_CERTS_MAX_AGE_SEC
    return max(MIN_CERTS_MAX_AGE_SEC, float(match.group(1)))


def accepted_audiences(configured: tuple[str, ...], host: str | None) -> tuple[str, ...]:
    """The audiences a token may name: IAM_AUDIENCE's, or else this service's URL as the
    client reached it (the worker's default audience is the rendezvous URL it connects to,
    and on Cloud Run the front end routes by Host, so Host is the service's own name)."""
    if configured:
        return configured
    if not host:
        return ()
    return (f"https://{host}", f"http://{host}")


def verify_id_token(
    token: str, certificates: Certificates, audiences: tuple[str, ...]
) -> Mapping[str, Any]:
    """The token's claims once its signature, issuer, audience and expiry check out; or
    AuthError saying which did not."""
    if not audiences:
        raise AuthError("unauthenticated", "no audience to check the ID token against")
    try:
        claims: Mapping[str, Any] = google.auth.jwt.decode(  # type: ignore[no-untyped-call]
            token,
            certs=certificates,
            audience=list(audiences),
            clock_skew_in_seconds=CLOCK_SKEW_SEC,
        )
    except (google.auth.exceptions.GoogleAuthError, ValueError, TypeError) as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise AuthError("unauthenticated", f"the ID token does not verify: {reason}") from None
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise AuthError("unauthenticated", "the ID token was not issued by Google")
    return claims


def fetch_certificates(url: str) -> tuple[dict[str, str], float]:
    """Blocking: the certificates at `url` and how long they may be kept."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=CERTS_FETCH_TIMEOUT_SEC) as response:
        body = json.loads(response.read(1_000_000))
        max_age = cache_max_age(response.headers.get("Cache-Control"))
    if not isinstance(body, dict) or not body:
        raise ValueError("the answer is not an object of key id -> certificate")
    if not all(isinstance(key, str) and isinstance(pem, str) for key, pem in body.items()):
        raise ValueError("the answer has a key id or certificate that is not a string")
    return body, max_age


@dataclass(slots=True)
class _Cached:
    certificates: Certificates | None = None
    fresh_until: float = 0.0
    retry_at: float = 0.0


class CertificateCache:
    """Google's certificates, fetched off the event loop by one caller at a time."""

    def __init__(
        self,
        url: str = GOOGLE_CERTS_URL,
        *,
        fetch: Callable[[str], tuple[dict[str, str], float]] = fetch_certificates,
        retry_after_sec: float = CERTS_RETRY_AFTER_SEC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._retry_after = retry_after_sec
        self._clock = clock
        self._cached = _Cached()
        self._lock = asyncio.Lock()
        self.fetch_failures = 0

    async def certificates(self) -> Certificates | None:
        """The current certificates, refreshed first when stale (and not failing just
        now); None while none were ever fetched."""
        cached = self._cached
        now = self._clock()
        if now < cached.fresh_until or now < cached.retry_at:
            return cached.certificates
        async with self._lock:
            now = self._clock()
            if now < cached.fresh_until or now < cached.retry_at:
                return cached.certificates  # another caller fetched them while we waited
            try:
                certificates, max_age = await asyncio.to_thread(self._fetch, self.url)
            except Exception as error:  # any failure: log it, keep what we have, retry later
                self.fetch_failures += 1
                cached.retry_at = self._clock() + self._retry_after
                log_event(
                    logger,
                    RendezvousEvent.ID_TOKEN_CERTS_FAILED,
                    f"Cannot fetch the ID token certificates from {self.url}: {error}",
                    level=logging.ERROR,
                    url=self.url,
                    reason=str(error)[:200] or type(error).__name__,
                    retry_in_sec=self._retry_after,
                    have_certificates=cached.certificates is not None,
                )
                return cached.certificates
            cached.certificates = certificates
            cached.fresh_until = self._clock() + max_age
            cached.retry_at = 0.0
            return certificates

    async def verifier(self, audiences: tuple[str, ...]) -> IdTokenVerifier:
        """`verify_id_token` with the current certificates; AuthError while there are none."""
        certificates = await self.certificates()
        if certificates is None:
            raise AuthError(
                "unauthenticated",
                f"the ID token certificates ({self.url}) could not be fetched yet: retry later",
                close_reason="ID token certificates unavailable",
            )
        return functools.partial(verify_id_token, certificates=certificates, audiences=audiences)
