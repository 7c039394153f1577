"""A stand-in for the GCE/Cloud Run metadata server that google-auth asks for ID tokens.

google-auth honours GCE_METADATA_HOST and GCE_METADATA_IP, so a worker process pointed
here runs its real AUTH_MODE=iam code path. Its tokens are signed by a stand-in issuer
(tests/support/id_tokens.py) when one is given, for a rendezvous that verifies them with
that issuer's certificates; unsigned otherwise.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.support.id_tokens import StandInIssuer

__all__ = ["FakeMetadataServer", "fake_metadata_server", "unsigned_id_token"]


def unsigned_id_token(email: str, audience: str, lifetime: float = 3600.0) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"email": email, "aud": audience, "exp": int(time.time() + lifetime)}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.unsigned"


@dataclass
class FakeMetadataServer:
    email: str
    address: str = ""
    audiences: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"GCE_METADATA_HOST": self.address, "GCE_METADATA_IP": self.address}


@contextmanager
def fake_metadata_server(
    email: str, issuer: StandInIssuer | None = None
) -> Iterator[FakeMetadataServer]:
    state = FakeMetadataServer(email)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path.endswith("/service-accounts/default/identity"):
                audience = parse_qs(url.query).get("audience", [""])[0]
                state.audiences.append(audience)
                token = (
                    unsigned_id_token(email, audience)
                    if issuer is None
                    else issuer.token(email, audience)
                )
                body, kind = token.encode(), "text/plain"
            elif url.path.endswith("/service-accounts/default/"):
                info = {"email": email, "aliases": ["default"], "scopes": []}
                body, kind = json.dumps(info).encode(), "application/json"
            else:  # google-auth's "are we on Google Cloud?" probe
                body, kind = b"", "text/plain"
            self.send_response(200)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.address = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
