"""The worker's HTTP listener on $PORT: `GET /` -> `OK`, `GET /status` -> JSON, and the
routes of an optional `ApiHandler` (the worker's `GET /peers` and
`POST /peers/{peer_id}/connect|echo`).

Cloud Run requires every service to listen on $PORT (its default startup probe is a TCP
connect). Two read-only routes do not need a framework: this is `asyncio.start_server`
in the worker's own event loop. uvicorn's `Server.serve()` would install its own SIGINT
and SIGTERM handlers with `signal.signal`, replacing the worker's shutdown handler, and
would bring a second lifecycle to coordinate. Each response closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from holepunch_logging import WorkerEvent, log_event

__all__ = ["ApiHandler", "ApiResponse", "StatusProvider", "respond", "start_http_server"]

StatusProvider = Callable[[], dict[str, Any]]
ApiResponse = tuple[HTTPStatus, dict[str, Any]]
# (method, target: the path and any ?query) -> a JSON response, or None when the route is
# not the handler's.
ApiHandler = Callable[[str, str], Awaitable[ApiResponse | None]]

_MAX_HEADER_BYTES = 8192
_READ_TIMEOUT_SEC = 10.0
_MAX_BODY_BYTES = 64 * 1024  # request bodies are read and ignored


def _response(status: HTTPStatus, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    header = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return header if head else header + body


def respond(request_line: bytes, status_provider: StatusProvider) -> bytes:
    """The full response to one request line (pure, apart from calling the provider)."""
    parts = request_line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _response(HTTPStatus.BAD_REQUEST, b"bad request\n", "text/plain; charset=utf-8")
    method, target, _ = parts
    path = target.split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return _response(
            HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", "text/plain; charset=utf-8"
        )
    head = method == "HEAD"
    if path == "/":
        return _response(HTTPStatus.OK, b"OK", "text/plain; charset=utf-8", head=head)
    if path == "/status":
        body = json.dumps(status_provider(), separators=(",", ":")).encode()
        return _response(HTTPStatus.OK, body, "application/json", head=head)
    return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", head=head)


def json_response(status: HTTPStatus, body: dict[str, Any]) -> bytes:
    return _response(status, json.dumps(body, separators=(",", ":")).encode(), "application/json")


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
                response = api_response or respond(request_line, status_provider)
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
