"""A SOCKS5 client (RFC 1928: no authentication, CONNECT to a host name) for the benches,
the demo and the tests: what `curl --socks5-hostname` does, in Python.

`connect_request` and `parse_reply_head` are pure; `socks5_connect` runs the exchange on
an open asyncio stream.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

__all__ = [
    "REPLY_MESSAGES",
    "SocksError",
    "connect_request",
    "greeting",
    "parse_reply_head",
    "socks5_connect",
]

_VERSION = 5
_NO_AUTHENTICATION = 0
_CONNECT = 1
_ATYP_IPV4, _ATYP_DOMAIN, _ATYP_IPV6 = 1, 3, 4

REPLY_MESSAGES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class SocksError(Exception):
    """The proxy refused (`reply` is its REP code) or spoke something else (`reply` None)."""

    def __init__(self, reply: int | None, detail: str) -> None:
        super().__init__(detail)
        self.reply = reply


def greeting() -> bytes:
    return bytes((_VERSION, 1, _NO_AUTHENTICATION))


def connect_request(host: str, port: int) -> bytes:
    """CONNECT to `host` (an IP literal, or a name the proxy resolves) and `port`."""
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        if not 0 < len(name) < 256:
            raise ValueError(f"host name length must be 1..255: {host!r}") from None
        destination = bytes((_ATYP_DOMAIN, len(name))) + name
    else:
        kind = _ATYP_IPV4 if address.version == 4 else _ATYP_IPV6
        destination = bytes((kind,)) + address.packed
    return bytes((_VERSION, _CONNECT, 0)) + destination + struct.pack("!H", port)


def parse_reply_head(head: bytes) -> int:
    """The first 5 bytes of the reply: the number of bytes of it still to read (the rest of
    the bound address and its port). Raises SocksError on a refusal or a malformed reply."""
    if len(head) != 5 or head[0] != _VERSION:
        raise SocksError(None, f"not a SOCKS5 reply: {head!r}")
    if head[1] != 0:
        reason = REPLY_MESSAGES.get(head[1], "unknown reply code")
        raise SocksError(head[1], f"SOCKS5 proxy refused: {reason} (reply {head[1]})")
    if head[3] == _ATYP_IPV4:
        return 4 - 1 + 2
    if head[3] == _ATYP_IPV6:
        return 16 - 1 + 2
    if head[3] == _ATYP_DOMAIN:
        return head[4] + 2
    raise SocksError(None, f"unknown address type in the reply: {head[3]}")


async def socks5_connect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    """On a stream open to the proxy: ask for `host:port`; return once the proxy says the
    connection is made (the stream then carries the application's bytes)."""
    writer.write(greeting())
    try:
        choice = await reader.readexactly(2)
        if choice != bytes((_VERSION, _NO_AUTHENTICATION)):
            raise SocksError(None, f"the proxy wants an authentication method: {choice!r}")
        writer.write(connect_request(host, port))
        rest = parse_reply_head(await reader.readexactly(5))
        await reader.readexactly(rest)
    except asyncio.IncompleteReadError as error:
        raise SocksError(None, f"the proxy closed the connection ({error.partial!r})") from None
