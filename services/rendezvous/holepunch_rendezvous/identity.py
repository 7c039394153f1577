"""Worker keys at the rendezvous: the challenge, the proof, and the worker_id bindings.

Pure code, no I/O: `new_challenge` draws its nonce from os.urandom unless a test passes one.

- A worker that names a public key in the upgrade (`PUBLIC_KEY_HEADER`) gets an
  `auth_challenge` with a fresh nonce and must answer with an `auth_proof`: its key and
  its signature of `registration_message(nonce, worker_id)`. A nonce is used by one
  connection only and never again, so no proof can be replayed.
- A worker that names no key is keyless (the original design): served only where the
  operator allows it (`ALLOW_KEYLESS_WORKERS`), and never under a worker_id bound to a key.
- A worker_id is bound to the first key proven for it. Another key is refused while the
  binding lasts: as long as a connection of that key is the worker's current one, and
  `ttl` seconds after it ended (enough to reconnect), or until an operator releases it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from holepunch_protocol import (
    NONCE_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    AuthChallenge,
    AuthProof,
    CloseCode,
    ErrorCode,
    ProtocolError,
    b64url_decode,
    b64url_encode,
    key_fingerprint,
    registration_message,
)

__all__ = [
    "DEFAULT_KEY_BINDING_TTL_SEC",
    "Challenge",
    "IdentityRefusal",
    "KeyBindings",
    "VerifiedKey",
    "announced_key",
    "invalid_proof",
    "keyless_refusal",
    "mismatch_refusal",
    "new_challenge",
    "verify_proof",
]

# Longer than a worker's longest reconnect delay (RECONNECT_MAX_DELAY_SEC, 60 s by default)
# and a rendezvous restart, short enough that a worker restarted with a fresh key (the
# default) is served again soon.
DEFAULT_KEY_BINDING_TTL_SEC = 600.0
SWEEP_MINIMUM = 1024


@dataclass(frozen=True, slots=True)
class IdentityRefusal:
    """Why a connection is refused: the error frame, then the close code and reason."""

    error: ProtocolError
    close_code: CloseCode
    reason: str


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    public_key: str  # unpadded base64url of the 32 raw bytes

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.public_key)


# Cached: the fleet page's search and /debug/list_workers read every worker's, each time.
@functools.lru_cache(maxsize=16_384)
def _fingerprint(public_key: str) -> str:
    return key_fingerprint(b64url_decode(public_key, PUBLIC_KEY_BYTES))


@dataclass(frozen=True, slots=True)
class Challenge:
    """One connection's challenge: its nonce is never sent to another connection."""

    nonce: bytes
    worker_id: str
    announced_key: str

    @property
    def message(self) -> AuthChallenge:
        return AuthChallenge(nonce=b64url_encode(self.nonce))


def _refusal(code: ErrorCode, detail: str, close: CloseCode, reason: str) -> IdentityRefusal:
    return IdentityRefusal(ProtocolError(code, detail), close, reason)


def invalid_proof(detail: str) -> IdentityRefusal:
    return _refusal(ErrorCode.KEY_PROOF_INVALID, detail, CloseCode.UNAUTHENTICATED, detail)


def keyless_refusal() -> IdentityRefusal:
    return _refusal(
        ErrorCode.KEYLESS_NOT_ALLOWED,
        "this rendezvous serves only workers with a key (ALLOW_KEYLESS_WORKERS is off)",
        CloseCode.UNAUTHENTICATED,
        "a worker key is required",
    )


def mismatch_refusal() -> IdentityRefusal:
    detail = "worker_id is bound to another key"
    return _refusal(ErrorCode.WORKER_KEY_MISMATCH, detail, CloseCode.FORBIDDEN, detail)


def announced_key(header: str | None) -> str | IdentityRefusal | None:
    """The key named in the upgrade's header: None for a keyless worker."""
    if header is None:
        return None
    try:
        b64url_decode(header.strip(), PUBLIC_KEY_BYTES)
    except ValueError:
        return invalid_proof(f"the public key header must be base64url of {PUBLIC_KEY_BYTES} bytes")
    return header.strip().rstrip("=")


def new_challenge(worker_id: str, public_key: str, nonce: bytes | None = None) -> Challenge:
    return Challenge(nonce or os.urandom(NONCE_BYTES), worker_id, public_key)


def verify_proof(challenge: Challenge, proof: AuthProof) -> VerifiedKey | IdentityRefusal:
    """The proven key, if `proof` signs this challenge for its worker_id with the key the
    worker named; a refusal otherwise."""
    if proof.public_key != challenge.announced_key:
        return invalid_proof("the proof names another key than the upgrade did")
    key_bytes = b64url_decode(proof.public_key, PUBLIC_KEY_BYTES)
    signature = b64url_decode(proof.signature, SIGNATURE_BYTES)
    try:
        Ed25519PublicKey.from_public_bytes(key_bytes).verify(
            signature, registration_message(challenge.nonce, challenge.worker_id)
        )
    except (InvalidSignature, ValueError):
        return invalid_proof("the signature does not match the challenge and worker_id")
    return VerifiedKey(proof.public_key)


@dataclass(slots=True)
class _Binding:
    public_key: str
    expires_at: float | None  # None: a connection of this key is current


class KeyBindings:
    """worker_id -> public key, in this process (MemoryStore's table, and a RedisStore's
    fallback while Redis is away)."""

    def __init__(self, ttl: float = DEFAULT_KEY_BINDING_TTL_SEC) -> None:
        self.ttl = ttl
        self._bindings: dict[str, _Binding] = {}
        # A lapsed binding is dropped when its id is next used, and all of them when the
        # table has doubled since the last sweep: ids never used again do not pile up.
        self._sweep_at = SWEEP_MINIMUM

    def __len__(self) -> int:
        return len(self._bindings)

    def bound_key(self, worker_id: str, now: float) -> str | None:
        binding = self._bindings.get(worker_id)
        if binding is None:
            return None
        if binding.expires_at is not None and now >= binding.expires_at:
            del self._bindings[worker_id]
            return None
        return binding.public_key

    def admit(self, worker_id: str, public_key: str | None, now: float) -> bool:
        """May a connection with `public_key` (None: keyless) take `worker_id`? A key is
        bound to a free id (and kept while it is connected); a keyless one binds nothing."""
        bound = self.bound_key(worker_id, now)
        if public_key is None:
            return bound is None
        if bound is not None and bound != public_key:
            return False
        self._bindings[worker_id] = _Binding(public_key, None)
        if len(self._bindings) >= self._sweep_at:
            self._sweep(now)
        return True

    def _sweep(self, now: float) -> None:
        self._bindings = {
            worker_id: binding
            for worker_id, binding in self._bindings.items()
            if binding.expires_at is None or now < binding.expires_at
        }
        self._sweep_at = max(SWEEP_MINIMUM, 2 * len(self._bindings))

    def left(self, worker_id: str, public_key: str, now: float) -> None:
        """The key's current connection ended: the binding lasts `ttl` more seconds."""
        binding = self._bindings.get(worker_id)
        if binding is not None and binding.public_key == public_key:
            binding.expires_at = now + self.ttl

    def release(self, worker_id: str, now: float) -> str | None:
        """Forget the binding (an operator's decision); the key it held, if any."""
        bound = self.bound_key(worker_id, now)
        self._bindings.pop(worker_id, None)
        return bound
