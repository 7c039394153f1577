"""A TCP listener that serves each client in its own task and can close them all.

asyncio's `Server.close()` stops accepting but leaves the handlers running (Python
3.11); the proxy and the forwards must end their relays at shutdown, so this keeps the
tasks and cancels them. Past `max_clients` a new client is aborted on arrival.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from holepunch_worker.dataplane.splice import reset

__all__ = ["ClientHandler", "TcpListener"]

ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class TcpListener:
    def __init__(
        self, handler: ClientHandler, *, max_clients: int, on_full: Callable[[int], None]
    ) -> None:
        self._handler = handler
        self._max_clients = max_clients
        self._on_full = on_full
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on `host:port`; the address bound (port 0 picks one)."""
        self._server = await asyncio.start_server(self._accepted, host, port)
        host_bound, port_bound = self._server.sockets[0].getsockname()[:2]
        return str(host_bound), int(port_bound)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= self._max_clients:
            reset(writer)
            self._on_full(len(self._clients))
            return
        task = asyncio.create_task(self._serve(reader, writer))
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            writer.transport.abort()  # the client went away
        finally:
            writer.close()
