"""A real rendezvous (uvicorn on an ephemeral loopback port) inside the test's event loop."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from holepunch_rendezvous.app import Rendezvous
from holepunch_rendezvous.config import RendezvousConfig
from holepunch_rendezvous.server import RendezvousServer, build_server
from websockets.asyncio.client import ClientConnection

__all__ = ["RunningRendezvous", "ask", "eventually", "running_rendezvous"]


@dataclass
class RunningRendezvous:
    server: RendezvousServer
    rendezvous: Rendezvous
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, worker_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/register/{worker_id}"


@asynccontextmanager
async def running_rendezvous(
    config: RendezvousConfig | None = None,
) -> AsyncIterator[RunningRendezvous]:
    config = config or RendezvousConfig(host="127.0.0.1", port=0, debug_endpoints=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    rendezvous = Rendezvous(config)
    server = build_server(config, rendezvous)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    ready = asyncio.create_task(server.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        raise RuntimeError("rendezvous did not start")
    try:
        yield RunningRendezvous(server, rendezvous, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        listener.close()


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = ""
) -> None:
    """Wait until `condition` holds, checking it each time the loop comes round."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {what or condition}")
        await asyncio.sleep(0.01)


async def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send one JSON message and read the next frame (5 s at most)."""
    await ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return reply
