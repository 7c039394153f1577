"""Demultiplexing the worker's UDP datagrams, and the HTTP responses, without sockets."""

from __future__ import annotations

import json

from aioice import stun
from holepunch_protocol import encode_ping, pong_for, pong_token
from holepunch_worker.http_status import respond
from holepunch_worker.udp import DatagramKind, classify_datagram


def binding_request() -> bytes:
    return bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))


def test_stun_is_recognised_by_its_header() -> None:
    assert classify_datagram(binding_request()) is DatagramKind.STUN
    message = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)
    message.attributes["XOR-MAPPED-ADDRESS"] = ("192.0.2.1", 1234)
    assert classify_datagram(bytes(message)) is DatagramKind.STUN


def test_near_stun_is_not_stun() -> None:
    request = binding_request()
    assert classify_datagram(request[:19]) is DatagramKind.OTHER  # shorter than a header
    assert classify_datagram(request + b"\0\0\0\0") is DatagramKind.OTHER  # length lies
    no_cookie = request[:4] + b"\0\0\0\0" + request[8:]  # RFC 3489, or random bytes
    assert classify_datagram(no_cookie) is DatagramKind.OTHER
    assert classify_datagram(b"\xc0" + request[1:]) is DatagramKind.OTHER  # first bits 11


def test_ping_pong_and_garbage() -> None:
    assert classify_datagram(encode_ping(b"token")) is DatagramKind.PING
    assert classify_datagram(pong_for(encode_ping(b"t")) or b"") is DatagramKind.PONG
    assert classify_datagram(b"") is DatagramKind.OTHER
    assert classify_datagram(b"hello") is DatagramKind.OTHER
    assert classify_datagram(encode_ping() + b"x" * 65) is DatagramKind.OTHER  # token too long


def test_a_pong_echoes_the_ping_token_and_never_amplifies() -> None:
    ping = encode_ping(b"abc")
    pong = pong_for(ping)
    assert pong is not None and pong_token(pong) == b"abc"
    assert len(pong) <= len(ping)
    assert pong_for(b"HOLEPUNCH-PONG:abc") is None


def test_http_routes() -> None:
    status = {"worker_id": "w-1", "mapping": "endpoint_independent"}
    ok = respond(b"GET / HTTP/1.1", lambda: status)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nOK")
    head, _, body = respond(b"GET /status?x=1 HTTP/1.1", lambda: status).partition(b"\r\n\r\n")
    assert b"application/json" in head and json.loads(body) == status
    assert respond(b"HEAD / HTTP/1.1", lambda: status).endswith(b"\r\n\r\n")
    assert respond(b"GET /nope HTTP/1.1", lambda: status).startswith(b"HTTP/1.1 404 ")
    assert respond(b"POST / HTTP/1.1", lambda: status).startswith(b"HTTP/1.1 405 ")
    assert respond(b"garbage", lambda: status).startswith(b"HTTP/1.1 400 ")
