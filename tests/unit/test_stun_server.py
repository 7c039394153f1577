"""The dev STUN server's codec and CLI parsing, without sockets."""

from __future__ import annotations

import argparse

import pytest
from aioice import stun
from holepunch_devtools.stun_server import binding_response, parse_listen_address

CLIENT = ("192.0.2.10", 54321)


def test_binding_request_gets_both_mapped_address_attributes() -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    response = stun.parse_message(binding_response(bytes(request), CLIENT) or b"")
    assert response.message_method == stun.Method.BINDING
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == CLIENT
    assert response.attributes["MAPPED-ADDRESS"] == CLIENT
    assert "FINGERPRINT" in response.attributes  # parse_message checked it


def test_ipv6_clients_are_answered() -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    response = stun.parse_message(binding_response(bytes(request), ("2001:db8::5", 9)) or b"")
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("2001:db8::5", 9)


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"hello world, not stun at all",
        bytes(stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)),  # not a request
        bytes(stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)),  # not Binding
        bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))[:-1] + b"",
        bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)) + b"\0\0\0\0",
    ],
    # Named, not shown: the transaction ids are random, and pytest-xdist workers must all
    # collect the same test ids.
    ids=["empty", "text", "response", "allocate", "truncated", "trailing-bytes"],
)
def test_anything_but_a_binding_request_is_ignored(datagram: bytes) -> None:
    assert binding_response(datagram, CLIENT) is None


def test_rfc3489_requests_without_the_magic_cookie_are_ignored() -> None:
    request = bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))
    assert binding_response(request[:4] + b"\x01\x02\x03\x04" + request[8:], CLIENT) is None


def test_listen_address_parsing() -> None:
    assert parse_listen_address("127.0.0.2:3478") == ("127.0.0.2", 3478)
    assert parse_listen_address("[::1]:0") == ("::1", 0)
    for bad in ("127.0.0.1", ":3478", "host:port", "h:70000"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_listen_address(bad)
