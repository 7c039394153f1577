"""A stand-in for Google's ID token issuer: an RSA key, its self-signed certificate served
by a real local HTTP server in Google's v1 format, and JWTs signed with the key."""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google.auth.crypt
import google.auth.jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["SigningKey", "StandInIssuer", "stand_in_issuer", "unsigned_token"]

GOOGLE_ISSUER = "https://accounts.google.com"


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_pem: str
    certificate_pem: str

    @classmethod
    def generate(cls, key_id: str) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key_id)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls(
            key_id, private_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()
        )

    def sign(self, claims: Mapping[str, Any], key_id: str | None = None) -> str:
        signer = google.auth.crypt.RSASigner.from_string(self.private_pem, key_id or self.key_id)
        token: bytes = google.auth.jwt.encode(signer, dict(claims))
        return token.decode()


def unsigned_token(claims: Mapping[str, Any]) -> str:
    """`alg: none`, no signature."""

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(dict(claims))}."


@dataclass
class StandInIssuer:
    key: SigningKey
    port: int = 0
    # While False the certificates URL answers 503, as an outage would.
    available: bool = True
    requests: int = 0
    max_age_sec: int = 3600
    extra_certificates: dict[str, str] = field(default_factory=dict)

    @property
    def certs_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth2/v1/certs"

    def claims(self, email: str, audience: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": GOOGLE_ISSUER,
            "aud": audience,
            "email": email,
            "sub": "1" + str(abs(hash(email)))[:20],
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(overrides)
        return claims

    def token(self, email: str, audience: str, **overrides: Any) -> str:
        return self.key.sign(self.claims(email, audience, **overrides))


@contextmanager
def stand_in_issuer() -> Iterator[StandInIssuer]:
    """The issuer with its certificates served on a loopback port, for the block's length."""
    issuer = StandInIssuer(SigningKey.generate("stand-in-key-1"))

    class CertsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer.requests += 1
            if not issuer.available or self.path != "/oauth2/v1/certs":
                self.send_error(503 if self.path == "/oauth2/v1/certs" else 404)
                return
            certificates = {issuer.key.key_id: issuer.key.certificate_pem}
            body = json.dumps({**certificates, **issuer.extra_certificates}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Cache-Control", f"public, max-age={issuer.max_age_sec}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output stays the test's

    server = ThreadingHTTPServer(("127.0.0.1", 0), CertsHandler)
    issuer.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
