"""The SOCKS5 client's pure halves (holepunch_devtools.socks_client)."""

from __future__ import annotations

import pytest
from holepunch_devtools.socks_client import (
    SocksError,
    connect_request,
    greeting,
    parse_reply_head,
)


def test_greeting_offers_no_authentication_only() -> None:
    assert greeting() == b"\x05\x01\x00"


def test_connect_request_sends_a_host_name_for_the_proxy_to_resolve() -> None:
    assert connect_request("worker-b.holepunch", 8000) == (
        b"\x05\x01\x00\x03\x12worker-b.holepunch\x1f\x40"
    )


def test_connect_request_sends_ip_literals_as_addresses() -> None:
    assert connect_request("10.0.0.1", 80) == b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50"
    assert connect_request("::1", 1) == b"\x05\x01\x00\x04" + bytes(15) + b"\x01\x00\x01"


@pytest.mark.parametrize(("host", "port"), [("a" * 256, 80), ("", 80), ("x", 0), ("x", 65536)])
def test_connect_request_refuses_what_socks_cannot_say(host: str, port: int) -> None:
    with pytest.raises(ValueError):
        connect_request(host, port)


@pytest.mark.parametrize(
    ("head", "rest"),
    [(b"\x05\x00\x00\x01\x7f", 5), (b"\x05\x00\x00\x04\x00", 17), (b"\x05\x00\x00\x03\x09", 11)],
)
def test_reply_head_says_how_much_of_the_reply_is_left(head: bytes, rest: int) -> None:
    assert parse_reply_head(head) == rest


def test_a_refusal_carries_the_reply_code() -> None:
    with pytest.raises(SocksError, match="connection refused") as refused:
        parse_reply_head(b"\x05\x05\x00\x01\x00")
    assert refused.value.reply == 5


@pytest.mark.parametrize("head", [b"\x04\x00\x00\x01\x00", b"\x05\x00", b"\x05\x00\x00\x09\x00"])
def test_anything_else_is_not_socks5(head: bytes) -> None:
    with pytest.raises(SocksError) as error:
        parse_reply_head(head)
    assert error.value.reply is None
