"""Optional public IP lookup through an HTTP echo service (PUBLIC_IP_ECHO_URL).

Off unless configured. urllib blocks, so it runs in a thread: the event loop, and with
it STUN and the WebSocket, never waits on it.
"""

from __future__ import annotations

import asyncio
import urllib.request

from holepunch_protocol import ProtocolError, parse_ip_literal

__all__ = ["fetch_public_ip"]

_MAX_BODY_BYTES = 256


def _fetch(url: str, timeout: float) -> bytes:
    # url is http(s): load_config checks PUBLIC_IP_ECHO_URL.
    request = urllib.request.Request(url, headers={"User-Agent": "holepunch-worker"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read(_MAX_BODY_BYTES)
        return body


async def fetch_public_ip(url: str, timeout: float = 10.0) -> str:
    """The IP literal the echo service returns; ValueError when it is not one."""
    body = await asyncio.to_thread(_fetch, url, timeout)
    try:
        return parse_ip_literal(body.decode("ascii", errors="replace").strip(), "ip")
    except ProtocolError as error:
        raise ValueError(f"echo service did not return an IP literal: {error.detail}") from None
