"""The SOCKS5 handshake machine, the peer-host rule and the reply for each data-plane
refusal: bytes in, answers out, no sockets."""

from __future__ import annotations

import pytest
from holepunch_worker.dataplane.interface import (
    ConnectRefused,
    DataPlaneError,
    PeerAuthenticationFailed,
    PeerUnavailable,
    StreamRefused,
)
from holepunch_worker.dataplane.socks5 import (
    SOCKS4_REJECTED,
    AddressType,
    ConnectRequest,
    PeerTarget,
    Reply,
    Socks5Handshake,
    TargetRefused,
    encode_reply,
    reply_for_error,
    resolve_target,
)

GREETING = bytes([5, 1, 0])
METHOD_CHOSEN = bytes([5, 0])


def domain_request(host: bytes, port: int, command: int = 1) -> bytes:
    return bytes([5, command, 0, 3, len(host)]) + host + port.to_bytes(2, "big")


def refused(reply: Reply) -> bytes:
    return bytes([5, reply, 0, 1, 0, 0, 0, 0, 0, 0])


def test_a_greeting_then_a_request_in_two_chunks() -> None:
    handshake = Socks5Handshake()
    step = handshake.receive_data(GREETING)
    assert step.to_send == METHOD_CHOSEN and step.request is None and not step.close
    assert not handshake.done
    step = handshake.receive_data(domain_request(b"worker-b.holepunch", 8000))
    assert step.request == ConnectRequest(AddressType.DOMAIN, "worker-b.holepunch", 8000)
    assert step.to_send == b"" and step.early_data == b"" and handshake.done


def test_byte_by_byte_gives_the_same_answers() -> None:
    data = GREETING + domain_request(b"worker-b.holepunch", 8000) + b"GET /"
    handshake = Socks5Handshake()
    sent = b""
    request = None
    for index in range(len(data)):
        step = handshake.receive_data(data[index : index + 1])
        sent += step.to_send
        if step.request is not None:
            request = step.request
            break
    assert sent == METHOD_CHOSEN
    assert request == ConnectRequest(AddressType.DOMAIN, "worker-b.holepunch", 8000)
    # The request's last byte ended the handshake: "GET /" was never fed.
    assert index == len(GREETING) + len(domain_request(b"worker-b.holepunch", 8000)) - 1


def test_pipelined_greeting_request_and_data_in_one_chunk() -> None:
    step = Socks5Handshake().receive_data(
        GREETING + domain_request(b"worker-b.holepunch", 80) + b"hello"
    )
    assert step.to_send == METHOD_CHOSEN
    assert step.request is not None and step.request.port == 80
    assert step.early_data == b"hello"


def test_ipv4_and_ipv6_requests_are_parsed() -> None:
    ipv4 = Socks5Handshake().receive_data(GREETING + bytes([5, 1, 0, 1, 127, 0, 0, 1, 0, 80]))
    assert ipv4.request == ConnectRequest(AddressType.IPV4, "127.0.0.1", 80)
    ipv6 = Socks5Handshake().receive_data(
        GREETING + bytes([5, 1, 0, 4]) + bytes(15) + b"\x01" + b"\x01\xbb"
    )
    assert ipv6.request == ConnectRequest(AddressType.IPV6, "::1", 443)


def test_the_no_authentication_method_among_others_is_chosen() -> None:
    step = Socks5Handshake().receive_data(bytes([5, 3, 2, 1, 0]))
    assert step.to_send == METHOD_CHOSEN and not step.close


@pytest.mark.parametrize(
    ("data", "answer", "reason"),
    [
        (bytes([5, 1, 2]), bytes([5, 0xFF]), "no_acceptable_method"),
        (bytes([5, 0]), bytes([5, 0xFF]), "no_acceptable_method"),
        (bytes([4, 1, 0, 80, 127, 0, 0, 1, 0]), SOCKS4_REJECTED, "socks4_not_supported"),
        (b"GET / HTTP/1.1\r\n", b"", "not_socks5"),
        (GREETING + bytes([4, 1, 0, 1]), refused(Reply.GENERAL_FAILURE), "not_socks5"),
        (GREETING + bytes([4]), refused(Reply.GENERAL_FAILURE), "not_socks5"),
        (
            GREETING + bytes([5, 2, 0, 1]),
            refused(Reply.COMMAND_NOT_SUPPORTED),
            "command_not_supported",
        ),
        (
            GREETING + bytes([5, 3, 0, 3]),
            refused(Reply.COMMAND_NOT_SUPPORTED),
            "command_not_supported",
        ),
        (
            GREETING + bytes([5, 1, 0, 2]),
            refused(Reply.ADDRESS_TYPE_NOT_SUPPORTED),
            "address_type_not_supported",
        ),
        (
            GREETING + domain_request(b"\xff.holepunch", 80),
            refused(Reply.HOST_UNREACHABLE),
            "invalid_host",
        ),
    ],
)
def test_a_malformed_or_unsupported_client_gets_its_answer_and_is_closed(
    data: bytes, answer: bytes, reason: str
) -> None:
    handshake = Socks5Handshake()
    step = handshake.receive_data(data)
    # The greeting's answer (if it came first) precedes the refusal.
    expected = (METHOD_CHOSEN + answer) if data.startswith(GREETING) else answer
    assert (step.to_send, step.close, step.reason) == (expected, True, reason)
    assert step.request is None and handshake.done
    with pytest.raises(RuntimeError, match="over"):
        handshake.receive_data(b"more")


def test_an_incomplete_handshake_asks_for_more_and_holds_only_one_message() -> None:
    handshake = Socks5Handshake()
    assert handshake.receive_data(bytes([5, 255]) + bytes(100)).to_send == b""
    step = handshake.receive_data(bytes(155) + bytes([5, 1, 0, 3, 255]) + b"a" * 200)
    assert step.to_send == METHOD_CHOSEN and step.request is None and not step.close
    step = handshake.receive_data(b"a" * 55 + b"\x00\x50")
    assert step.request == ConnectRequest(AddressType.DOMAIN, "a" * 255, 80)


def test_the_reply_names_no_bound_address() -> None:
    assert encode_reply(Reply.SUCCEEDED) == bytes([5, 0, 0, 1, 0, 0, 0, 0, 0, 0])


def domain(host: str, port: int = 8000) -> ConnectRequest:
    return ConnectRequest(AddressType.DOMAIN, host, port)


@pytest.mark.parametrize(
    ("host", "target"),
    [
        ("worker-b.holepunch", PeerTarget("worker-b", 8000)),
        ("worker-b.holepunch.", PeerTarget("worker-b", 8000)),
        ("Worker.B.HOLEPUNCH", PeerTarget("Worker.B", 8000)),
        (
            "0f8fad5b-d9cb-469f-a165-70867728950e.holepunch",
            PeerTarget("0f8fad5b-d9cb-469f-a165-70867728950e", 8000),
        ),
    ],
)
def test_a_holepunch_host_names_a_peer(host: str, target: PeerTarget) -> None:
    assert resolve_target(domain(host), "worker-a") == target


@pytest.mark.parametrize(
    ("request_", "reply", "reason"),
    [
        (domain("example.com"), Reply.NOT_ALLOWED, "not_a_peer"),
        (domain("holepunch"), Reply.NOT_ALLOWED, "not_a_peer"),
        (domain(""), Reply.NOT_ALLOWED, "not_a_peer"),
        (domain(".holepunch"), Reply.HOST_UNREACHABLE, "invalid_peer_id"),
        (domain("-bad.holepunch"), Reply.HOST_UNREACHABLE, "invalid_peer_id"),
        (domain("a" * 65 + ".holepunch"), Reply.HOST_UNREACHABLE, "invalid_peer_id"),
        (domain("worker-a.holepunch"), Reply.NOT_ALLOWED, "self"),
        (domain("worker-b.holepunch", 0), Reply.NOT_ALLOWED, "invalid_port"),
        (ConnectRequest(AddressType.IPV4, "127.0.0.1", 80), Reply.NOT_ALLOWED, "not_a_peer"),
        (ConnectRequest(AddressType.IPV6, "::1", 80), Reply.NOT_ALLOWED, "not_a_peer"),
    ],
)
def test_anything_else_is_refused(request_: ConnectRequest, reply: Reply, reason: str) -> None:
    refusal = resolve_target(request_, "worker-a")
    assert isinstance(refusal, TargetRefused)
    assert (refusal.reply, refusal.reason) == (reply, reason)
    assert refusal.detail


def test_an_ip_address_refusal_says_to_let_the_proxy_resolve() -> None:
    refusal = resolve_target(ConnectRequest(AddressType.IPV4, "10.0.0.1", 80), "worker-a")
    assert isinstance(refusal, TargetRefused) and "--socks5-hostname" in refusal.detail


@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (ConnectRefused("not_allowed", ""), Reply.NOT_ALLOWED),
        (ConnectRefused("tag_not_allowed", ""), Reply.NOT_ALLOWED),
        (ConnectRefused("peer_not_found", ""), Reply.HOST_UNREACHABLE),
        (ConnectRefused("peer_has_no_endpoint", ""), Reply.HOST_UNREACHABLE),
        (ConnectRefused("no_path", ""), Reply.HOST_UNREACHABLE),
        (ConnectRefused("no_endpoint", ""), Reply.NETWORK_UNREACHABLE),
        (PeerUnavailable("timeout", ""), Reply.TTL_EXPIRED),
        (PeerUnavailable("rendezvous_unavailable", ""), Reply.NETWORK_UNREACHABLE),
        (PeerUnavailable("no_connection", ""), Reply.HOST_UNREACHABLE),
        (PeerUnavailable("connection_lost", ""), Reply.HOST_UNREACHABLE),
        (PeerAuthenticationFailed("key_mismatch", ""), Reply.GENERAL_FAILURE),
        (StreamRefused("port_not_exposed", ""), Reply.NOT_ALLOWED),
        (StreamRefused("connect_failed", ""), Reply.CONNECTION_REFUSED),
        (StreamRefused("too_many_streams", ""), Reply.GENERAL_FAILURE),
        (StreamRefused("something_new", ""), Reply.GENERAL_FAILURE),
        (DataPlaneError("something_new", ""), Reply.GENERAL_FAILURE),
    ],
)
def test_each_data_plane_refusal_has_its_reply(error: DataPlaneError, reply: Reply) -> None:
    assert reply_for_error(error) is reply
