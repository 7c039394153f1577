"""The worker's key pair, and its answer to the rendezvous's challenge: no I/O but
reading the key file.

The worker's identity is an Ed25519 key pair: by default generated at start and kept for
the life of the process (a restarted worker is a new identity: its worker_id is free again
once the rendezvous's binding of the old key lapses, or an operator releases it), or
loaded from `WORKER_KEY_FILE` for an identity that survives restarts: a PEM private key
(PKCS#8, as `openssl genpkey -algorithm ed25519` writes) or the raw 32-byte seed.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from holepunch_env import ConfigError
from holepunch_protocol import (
    NONCE_BYTES,
    PUBLIC_KEY_HEADER,
    AuthChallenge,
    AuthProof,
    b64url_decode,
    b64url_encode,
    key_fingerprint,
    registration_message,
)

__all__ = ["SEED_BYTES", "WorkerKey"]

SEED_BYTES = 32
# A key file is a few hundred bytes; anything much larger is not one.
MAX_KEY_FILE_BYTES = 16 * 1024


class WorkerKey:
    """An Ed25519 private key and what the worker shows of it."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = b64url_encode(raw)
        self.fingerprint = key_fingerprint(raw)

    def __repr__(self) -> str:
        return f"WorkerKey(fingerprint={self.fingerprint!r})"

    @classmethod
    def generate(cls) -> WorkerKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, data: bytes, variable: str = "WORKER_KEY_FILE") -> WorkerKey:
        """A PEM private key, or a raw 32-byte seed; ConfigError for anything else."""
        if len(data) == SEED_BYTES and not data.startswith(b"-----"):
            return cls(Ed25519PrivateKey.from_private_bytes(data))
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError(
                variable,
                f"is neither a PEM private key without a password nor a raw "
                f"{SEED_BYTES}-byte Ed25519 seed",
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(variable, f"holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @classmethod
    def from_file(cls, path: str, variable: str = "WORKER_KEY_FILE") -> WorkerKey:
        try:
            with Path(path).open("rb") as file:
                data = file.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as error:
            raise ConfigError(variable, f"cannot be read ({path}): {error.strerror}") from None
        if len(data) > MAX_KEY_FILE_BYTES:
            raise ConfigError(variable, f"is larger than {MAX_KEY_FILE_BYTES} bytes: not a key")
        return cls.from_bytes(data, variable)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """For the data plane's TLS certificate (dataplane/tls_identity.py)."""
        return self._private_key

    def upgrade_headers(self) -> dict[str, str]:
        """The header that tells the rendezvous this worker will prove a key."""
        return {PUBLIC_KEY_HEADER: self.public_key}

    def prove(self, challenge: AuthChallenge, worker_id: str) -> AuthProof:
        """The answer to `challenge` for `worker_id`."""
        nonce = b64url_decode(challenge.nonce, NONCE_BYTES)
        signature = self._private_key.sign(registration_message(nonce, worker_id))
        return AuthProof(public_key=self.public_key, signature=b64url_encode(signature))
