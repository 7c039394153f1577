"""The smallest HTTP/1.0 server an application exchange needs: every GET gets one line of
text naming who answers and the path asked for (`make demo`, the NAT-lab tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

__all__ = ["answer_line", "http_answerer"]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answer_line(name: str, path: str) -> str:
    return f"hello from behind {name}: you asked for {path}\n"


def http_answerer(name: str) -> Handler:
    """A connection handler for asyncio.start_server that answers as `name`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").split()
            while (await reader.readline()).strip():
                pass  # the headers
            path = request_line[1] if len(request_line) > 1 else "/"
            body = answer_line(name, path).encode()
            writer.write(
                b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return answer
