"""The worker's built-in HTTP routes, answered by the pure `respond`: JSON for an unknown
route (404) and a wrong method (405, with Allow), and /readyz (issues 13 and 14)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from holepunch_worker.http_status import Readiness, respond

STATUS = {"worker_id": "w"}


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def json_of(response: bytes) -> tuple[int, dict[str, str], Any]:
    status, headers, body = split(response)
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    return status, headers, json.loads(body)


@pytest.mark.parametrize("path", ["/nope", "/statusx", "/peers/x/connect", "/readyz/"])
def test_an_unknown_route_is_a_json_404_whatever_the_method(path: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        status, _, body = json_of(respond(f"{method} {path} HTTP/1.1".encode(), lambda: STATUS))
        assert status == 404
        assert body == {"error": "not_found", "path": path}


@pytest.mark.parametrize("path", ["/", "/status", "/readyz"])
def test_a_known_route_with_another_method_is_a_json_405_with_allow(path: str) -> None:
    status, headers, body = json_of(respond(f"POST {path}?x=1 HTTP/1.1".encode(), lambda: STATUS))
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert body == {"error": "method_not_allowed", "method": "POST", "allowed": ["GET", "HEAD"]}


def test_readyz_is_503_with_the_reason_until_ready() -> None:
    waiting = Readiness(False, "no_stun_answer", "no STUN server answered")
    status, _, body = json_of(respond(b"GET /readyz HTTP/1.1", lambda: STATUS, lambda: waiting))
    assert status == 503
    assert body == {
        "status": "not_ready",
        "reason": "no_stun_answer",
        "detail": "no STUN server answered",
    }
    status, _, body = json_of(
        respond(b"GET /readyz HTTP/1.1", lambda: STATUS, lambda: Readiness(True))
    )
    assert (status, body) == (200, {"status": "ready"})


def test_readyz_head_has_no_body_and_a_server_without_a_provider_is_ready() -> None:
    status, headers, body = split(respond(b"HEAD /readyz HTTP/1.1", lambda: STATUS))
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_status_and_root_are_unchanged() -> None:
    status, _, body = json_of(respond(b"GET /status HTTP/1.1", lambda: STATUS))
    assert (status, body) == (200, STATUS)
    assert split(respond(b"GET / HTTP/1.1", lambda: STATUS))[::2] == (200, b"OK")
    assert split(respond(b"garbage", lambda: STATUS))[0] == 400
