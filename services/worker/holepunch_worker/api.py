"""The Python API: an application runs a worker inside its own event loop and talks to
peers through it.

    async with holepunch_worker.api.start(env) as node:
        reader, writer = await node.open_stream("worker-b", 8000)

`start` runs the real `Worker` in-process (its UDP socket, the rendezvous connection, the
HTTP status listener on `PORT`) and returns once the rendezvous holds this worker's
endpoint, so peers can be introduced to it. Everything else is a thin layer over the
worker and its data plane (`holepunch_worker.dataplane.interface`): the errors raised are
the data plane's (`ConnectRefused`, `PeerUnavailable`, `StreamRefused`, ...), each with a
stable `reason`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from holepunch_protocol import LIST_PEERS_MAX_LIMIT, PeerEntry

from holepunch_worker.config import WorkerConfig, load_config
from holepunch_worker.dataplane.interface import (
    DEFAULT_CONNECT_TIMEOUT_SEC,
    DatagramChannel,
    DataPlane,
    PeerConnection,
    StreamHandler,
)
from holepunch_worker.worker import Worker

__all__ = [
    "DATAGRAM_QUEUE_LIMIT",
    "DEFAULT_READY_TIMEOUT_SEC",
    "Node",
    "NodeStartFailed",
    "NodeStopped",
    "start",
]

DEFAULT_READY_TIMEOUT_SEC = 30.0
STOP_TIMEOUT_SEC = 10.0
# Received datagrams wait here for `datagrams()`/`receive_datagram()`; past this many the
# newest are dropped (and counted): datagrams are unreliable, memory is not unbounded.
DATAGRAM_QUEUE_LIMIT = 1024


class NodeStartFailed(RuntimeError):
    """The worker stopped, or was not registered in time; the message says why."""


class NodeStopped(RuntimeError):
    """The worker failed while the `start` block ran (raised when the block ends)."""


class Node:
    """A running worker, as an application sees it. Made by `start`."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._datagrams: asyncio.Queue[tuple[str, bytes]] | None = None
        self.datagrams_dropped = 0
        self._datagram_queue()  # keep datagrams from the start, not from the first read

    @property
    def worker_id(self) -> str:
        return self._worker.worker_id

    @property
    def worker(self) -> Worker:
        """The worker itself (its `status()` is what `GET /status` shows)."""
        return self._worker

    def _data_plane(self) -> DataPlane:
        return self._worker.data_plane

    async def peers(self, *, page_size: int = LIST_PEERS_MAX_LIMIT) -> list[PeerEntry]:
        """Every peer the rendezvous's policy lets this worker reach, asked for
        `page_size` (1..1000) at a time. Raises `PeerUnavailable` (`rendezvous_unavailable`,
        `timeout`)."""
        if not 1 <= page_size <= LIST_PEERS_MAX_LIMIT:
            raise ValueError(f"page_size must be in 1..{LIST_PEERS_MAX_LIMIT}, got {page_size}")
        found: list[PeerEntry] = []
        cursor: str | None = None
        while True:
            page = await self._worker.list_peers(page_size, cursor)
            found.extend(page.peers)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def introduce(self, peer_id: str, timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC) -> None:
        """Ask the rendezvous for an introduction and wait for the punch session (no
        QUIC connection): `connect` does this itself when it needs to."""
        await self._worker.introduce(peer_id, timeout, source="api")

    async def connect(
        self, peer_id: str, timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC
    ) -> PeerConnection:
        """The authenticated connection to `peer_id`, introduced and punched if needed."""
        return await self._data_plane().connect(peer_id, timeout=timeout)

    async def open_stream(
        self, peer_id: str, port: int, timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream to `port` on the peer (a port it exposes, or one a node there serves)."""
        return await self._data_plane().open_stream(peer_id, port, timeout=timeout)

    def serve(self, port: int, handler: StreamHandler) -> None:
        """Streams peers open to `port` go to `handler`, in this process (no TCP)."""
        self._data_plane().serve_port(port, handler)

    def send_datagram(self, peer_id: str, data: bytes) -> None:
        """One unreliable datagram on the existing connection to `peer_id` (`connect`
        first). Raises `ValueError` when larger than the connection's
        `max_datagram_payload`, `PeerUnavailable` without a connection."""
        self._data_plane().send_datagram(peer_id, DatagramChannel.APPLICATION, data)

    def _datagram_queue(self) -> asyncio.Queue[tuple[str, bytes]]:
        if self._datagrams is None:
            queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(DATAGRAM_QUEUE_LIMIT)

            def received(peer_id: str, payload: bytes) -> None:
                try:
                    queue.put_nowait((peer_id, payload))
                except asyncio.QueueFull:
                    self.datagrams_dropped += 1

            self._data_plane().on_datagram(DatagramChannel.APPLICATION, received)
            self._datagrams = queue
        return self._datagrams

    async def receive_datagram(self) -> tuple[str, bytes]:
        """The next datagram from any peer: (peer_id, payload)."""
        return await self._datagram_queue().get()

    async def datagrams(self) -> AsyncIterator[tuple[str, bytes]]:
        """`async for peer_id, payload in node.datagrams()`: every datagram received
        since the node started (up to `DATAGRAM_QUEUE_LIMIT` waiting)."""
        queue = self._datagram_queue()
        while True:
            yield await queue.get()


def _config_from(config: WorkerConfig | Mapping[str, str] | None) -> WorkerConfig:
    if isinstance(config, WorkerConfig):
        return config
    return load_config(os.environ if config is None else config)


async def _first_of(ready: asyncio.Task[None], running: asyncio.Task[None], timeout: float) -> None:
    done, _ = await asyncio.wait(
        {ready, running}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    if running in done:
        error = None if running.cancelled() else running.exception()
        raise NodeStartFailed(f"the worker stopped while starting: {error!r}") from error
    if ready not in done:
        raise NodeStartFailed(f"the rendezvous did not register this worker within {timeout:g} s")


@asynccontextmanager
async def start(
    config: WorkerConfig | Mapping[str, str] | None = None,
    *,
    logger: logging.Logger | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT_SEC,
) -> AsyncIterator[Node]:
    """Run a worker in this event loop until the block ends.

    `config`: a `WorkerConfig`, or environment variables as the `holepunch-worker`
    command reads them (`os.environ` when None; `ConfigError` names a bad one).
    Returns once the rendezvous holds this worker's endpoint; raises `NodeStartFailed`
    if the worker stops first or `ready_timeout` passes. On leaving the block the worker
    stops (its connections close, as on SIGTERM).
    """
    worker_config = _config_from(config)
    worker = Worker(worker_config, logger or logging.getLogger("holepunch_worker"))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop), name=f"holepunch-worker-{worker.worker_id}")
    ready = asyncio.create_task(worker.wait_registered(), name="holepunch-worker-ready")
    try:
        await _first_of(ready, running, ready_timeout)
        yield Node(worker)
    finally:
        ready.cancel()
        stop.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_SEC):
                await asyncio.gather(ready, running, return_exceptions=True)
    failure = None if not running.done() or running.cancelled() else running.exception()
    if failure is not None:  # the worker failed while the application used it
        raise NodeStopped(f"the worker failed: {failure!r}") from failure
