"""The worker's HTTP listener on $PORT: `GET /` -> `OK`, `GET /status` -> JSON,
`GET /readyz` (200 once the worker is ready, else 503 with the reason), and the routes of
an optional `ApiHandler` (the worker's `GET /peers` and `POST /peers/{peer_id}/connect|echo`).
Anything else is answered in JSON: 404 for an unknown route, 405 (with `Allow`) for a
known route asked with another method.

Cloud Run requires every service to listen on $PORT (its default startup probe is a TCP
connect; Terraform points it at /readyz). A few routes do not need a framework: this is
`asyncio.start_server` in the worker's own event loop. uvicorn's `Server.serve()` would
install its own SIGINT and SIGTERM handlers with `signal.signal`, replacing the worker's
shutdown handler, and would bring a second lifecycle to coordinate. Each response closes
its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from holepunch_logging import WorkerEvent, log_event

__all__ = [
    "ApiHandler",
    "ApiResponse",
    "Readiness",
    "ReadinessProvider",
    "StatusProvider",
    "json_response",
    "method_not_allowed",
    "respond",
    "start_http_server",
]

StatusProvider = Callable[[], dict[str, Any]]
ApiResponse = tuple[HTTPStatus, dict[str, Any]]
# (method, target: the path and any ?query) -> a JSON response, or None when the route is
# not the handler's.
ApiHandler = Callable[[str, str], Awaitable[ApiResponse | None]]


@dataclass(frozen=True, slots=True)
class Readiness:
    """`ready`, or why not (`reason`: a stable code; `detail`: for people)."""

    ready: bool
    reason: str | None = None
    detail: str | None = None


ReadinessProvider = Callable[[], Readiness]
ALWAYS_READY = Readiness(True)

_MAX_HEADER_BYTES = 8192
_READ_TIMEOUT_SEC = 10.0
_MAX_BODY_BYTES = 64 * 1024  # request bodies are read and ignored
_READ_METHODS = ("GET", "HEAD")
_BUILT_IN_PATHS = ("/", "/status", "/readyz")


def _response(
    status: HTTPStatus,
    body: bytes,
    content_type: str,
    *,
    head: bool = False,
    extra_headers: str = "",
) -> bytes:
    header = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        f"{extra_headers}"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return header if head else header + body


def json_response(status: HTTPStatus, body: dict[str, Any], *, head: bool = False) -> bytes:
    """A 405's `Allow` header comes from its body's `allowed` (`method_not_allowed`)."""
    encoded = json.dumps(body, separators=(",", ":")).encode()
    allow = ""
    if status is HTTPStatus.METHOD_NOT_ALLOWED and "allowed" in body:
        allow = f"Allow: {', '.join(body['allowed'])}\r\n"
    return _response(status, encoded, "application/json", head=head, extra_headers=allow)


def method_not_allowed(method: str, allowed: Sequence[str]) -> ApiResponse:
    """The JSON 405 for a known route asked with another method (built-in or API)."""
    body = {"error": "method_not_allowed", "method": method, "allowed": list(allowed)}
    return HTTPStatus.METHOD_NOT_ALLOWED, body


def _readiness_response(readiness: Readiness, head: bool) -> bytes:
    if readiness.ready:
        return json_response(HTTPStatus.OK, {"status": "ready"}, head=head)
    body = {"status": "not_ready", "reason": readiness.reason, "detail": readiness.detail}
    return json_response(HTTPStatus.SERVICE_UNAVAILABLE, body, head=head)


def respond(
    request_line: bytes,
    status_provider: StatusProvider,
    readiness_provider: ReadinessProvider | None = None,
) -> bytes:
    """The full response to one request line for the built-in routes, and the JSON 404 or
    405 for any other (pure, apart from calling the providers)."""
    parts = request_line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _response(HTTPStatus.BAD_REQUEST, b"bad request\n", "text/plain; charset=utf-8")
    method, target, _ = parts
    path = target.split("?", 1)[0]
    if path not in _BUILT_IN_PATHS:
        return json_response(HTTPStatus.NOT_FOUND, {"error": "not_found", "path": path})
    if method not in _READ_METHODS:
        return json_response(*method_not_allowed(method, _READ_METHODS))
    head = method == "HEAD"
    if path == "/":
        return _response(HTTPStatus.OK, b"OK", "text/plain; charset=utf-8", head=head)
    if path == "/readyz":
        return _readiness_response((readiness_provider or (lambda: ALWAYS_READY))(), head)
    return json_response(HTTPStatus.OK, status_provider(), head=head)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return int(value.strip())
            except ValueError:
                return -1
    return 0


async def _read_request_line(reader: asyncio.StreamReader) -> bytes | None:
    """The request line, after reading (and ignoring) the headers and any small body;
    None on a bad request."""
    try:
        async with asyncio.timeout(_READ_TIMEOUT_SEC):
            head = await reader.readuntil(b"\r\n\r\n")
            length = _content_length(head)
            if not 0 <= length <= _MAX_BODY_BYTES:
                return None
            if length:
                await reader.readexactly(length)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        return None
    return head.split(b"\r\n", 1)[0]


async def _api_response(request_line: bytes, api: ApiHandler) -> bytes | None:
    parts = request_line.decode("latin-1").split(" ")
    if len(parts) != 3:
        return None
    answer = await api(parts[0], parts[1])
    return None if answer is None else json_response(*answer)


async def start_http_server(
    host: str,
    port: int,
    status_provider: StatusProvider,
    logger: logging.Logger,
    api: ApiHandler | None = None,
    readiness_provider: ReadinessProvider | None = None,
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await _read_request_line(reader)
            if request_line is None:
                response = _response(
                    HTTPStatus.BAD_REQUEST, b"bad request\n", "text/plain; charset=utf-8"
                )
            else:
                api_response = None if api is None else await _api_response(request_line, api)
                response = api_response or respond(
                    request_line, status_provider, readiness_provider
                )
            writer.write(response)
            await writer.drain()
        except ConnectionError:
            pass
        except Exception as error:  # a bug in the status provider must not kill the loop
            log_event(
                logger,
                WorkerEvent.HTTP_ERROR,
                f"HTTP handler failed: {error!r}",
                level=logging.ERROR,
                reason=repr(error),
            )
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=_MAX_HEADER_BYTES)
