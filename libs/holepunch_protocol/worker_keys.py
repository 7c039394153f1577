"""Worker keys on the wire: pure bytes and text, no cryptography.

A worker's identity is an Ed25519 public key: 32 raw bytes, sent as unpadded base64url.
At registration the rendezvous sends a fresh nonce (`auth_challenge`) and the worker
signs `registration_message(nonce, worker_id)`; the domain prefix keeps a registration
signature from ever passing as a signature for anything else, and binding the worker_id
keeps a proof made for one id from registering another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

__all__ = [
    "NONCE_BYTES",
    "PUBLIC_KEY_BYTES",
    "PUBLIC_KEY_HEADER",
    "REGISTRATION_DOMAIN",
    "SIGNATURE_BYTES",
    "b64url_decode",
    "b64url_encode",
    "key_fingerprint",
    "registration_message",
]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NONCE_BYTES = 32
# A worker that holds a key names it in this header of the WebSocket upgrade; one that
# does not (the original design) sends no such header and is served as keyless.
PUBLIC_KEY_HEADER = "x-holepunch-public-key"
REGISTRATION_DOMAIN = b"holepunch-register-v1\0"
FINGERPRINT_HEX = 16


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, length: int) -> bytes:
    """`length` bytes from unpadded (or padded) base64url; ValueError otherwise."""
    if not text.isascii() or len(text) > 4 * length // 3 + 4:
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if len(data) != length or b64url_encode(data) != text.rstrip("="):
        raise ValueError(f"must encode exactly {length} bytes")
    return data


def key_fingerprint(public_key: bytes) -> str:
    """A short name for a key in logs and listings: the first hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:FINGERPRINT_HEX]


def registration_message(nonce: bytes, worker_id: str) -> bytes:
    """What the worker signs to register `worker_id` in answer to `nonce`."""
    return REGISTRATION_DOMAIN + nonce + worker_id.encode("utf-8")
