"""The worker's TLS identity for the data plane: its Ed25519 worker key, in a self-signed
certificate, and the pin that checks a peer's certificate against the key the rendezvous
introduced.

No certificate authority is involved: the rendezvous saw each worker prove its key
(README "Worker keys") and put that key in the introduction, so the certificate only
carries the key into TLS, where the handshake proves the peer holds it (CertificateVerify).
The pin is what authenticates; the certificate's names and dates mean nothing here.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID
from holepunch_protocol import PUBLIC_KEY_BYTES, b64url_decode

from holepunch_worker.identity import WorkerKey

__all__ = ["CERTIFICATE_LIFETIME", "certificate_matches_pin", "self_signed"]

CERTIFICATE_LIFETIME = datetime.timedelta(days=3650)
# A peer's clock may be behind ours; dates are not checked, but keep them plausible.
_BACKDATE = datetime.timedelta(days=1)


def self_signed(key: WorkerKey, worker_id: str) -> x509.Certificate:
    """A certificate for `key`, signed by itself, naming `worker_id`."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, worker_id)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .sign(key.private_key, algorithm=None)
    )


def certificate_matches_pin(certificate: x509.Certificate | None, pinned_key: str) -> bool:
    """True when `certificate` holds exactly the Ed25519 key `pinned_key` (base64url of
    its 32 raw bytes, as `peer_public_key` carries it); False for anything else: no
    certificate, another key type, another key, a malformed pin."""
    if certificate is None:
        return False
    try:
        pinned = b64url_decode(pinned_key, PUBLIC_KEY_BYTES)
        public_key = certificate.public_key()
    except ValueError:
        return False
    if not isinstance(public_key, Ed25519PublicKey):
        return False
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw == pinned
