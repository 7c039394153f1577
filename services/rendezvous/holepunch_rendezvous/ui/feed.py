"""The live feed: changes batched, shared with every instance, pushed to each viewer.

The rendezvous notes each change here as it happens. Every `batch_sec` the pending
changes go out as one batch: through the store to every instance (Redis pub/sub, one
PUBLISH per batch, whatever the churn), or straight to this instance's viewers when the
registry is not shared (or Redis is away). Each instance applies the batches it
receives, its own included, to its picture of the paths and pushes them to its viewers;
so every viewer sees the whole cluster, and a viewer costs one write per batch.

A viewer that falls `capacity` batches behind (a stalled browser) is not buffered
further: its backlog is dropped and it is told to reload what it shows (`resync`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from holepunch_logging import RendezvousEvent, log_event

from holepunch_rendezvous.ui.changes import FleetChange, decode_batch, encode_batch
from holepunch_rendezvous.ui.fleet import FleetCache
from holepunch_rendezvous.ui.paths import PathBook

__all__ = ["LiveFeed", "Viewer", "sse_event"]

logger = logging.getLogger("holepunch.rendezvous")

BATCH_SEC = 0.2
VIEWER_CAPACITY = 64
MAX_VIEWERS = 100
KEEP_RECENT = 500

Share = Callable[[bytes], Awaitable[bool]]


def sse_event(name: str, data: bytes) -> bytes:
    """One Server-Sent Event; `data` is one line of JSON (orjson never writes newlines)."""
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


class Viewer:
    """One browser's stream: the events waiting to be written to it, bounded."""

    def __init__(self, capacity: int = VIEWER_CAPACITY) -> None:
        self._pending: collections.deque[bytes] = collections.deque()
        self._capacity = capacity
        self._wake = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def push(self, frame: bytes) -> None:
        if len(self._pending) >= self._capacity:
            self._pending.clear()
            self.overflowed = True
        else:
            self._pending.append(frame)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next_frames(self, timeout: float) -> bytes:
        """What to write next: the waiting events, a `resync` after an overflow, or
        nothing when `timeout` passed quietly (the caller writes a keep-alive)."""
        if not self._pending and not self.overflowed and not self.closed:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return b""
        if self.overflowed:
            self.overflowed = False
            self._pending.clear()
            return sse_event("resync", b"{}")
        frames = b"".join(self._pending)
        self._pending.clear()
        return frames


class LiveFeed:
    def __init__(
        self,
        *,
        enabled: bool,
        batch_sec: float = BATCH_SEC,
        max_viewers: int = MAX_VIEWERS,
    ) -> None:
        self.enabled = enabled
        self.batch_sec = batch_sec
        self.max_viewers = max_viewers
        self.paths = PathBook()
        self.recent: collections.deque[FleetChange] = collections.deque(maxlen=KEEP_RECENT)
        self._pending: list[FleetChange] = []
        self._viewers: set[Viewer] = set()
        self._share: Share | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._drained = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters: collections.Counter[str] = collections.Counter()
        # The fleet's version as the viewers know it: it moves with every batch received.
        self.version = 0
        self.tables = FleetCache()

    def share_through(self, share: Share) -> None:
        """Send batches through `share` (the store): True when it reached every instance
        (which hand it back through `receive`), False to deliver it here only."""
        self._share = share

    # --- changes in ------------------------------------------------------------------

    def note(self, changes: list[FleetChange]) -> None:
        if not self.enabled or not changes or self._drained:
            return
        self._pending.extend(changes)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.batch_sec, self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Send what is pending now and take no more changes: the last step before the
        store closes (a batch sent later would reopen its connection)."""
        self._drained = True
        await self._flush()
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        payload = encode_batch(batch)
        self.counters["batches_sent"] += 1
        self.counters["changes_sent"] += len(batch)
        shared = False
        if self._share is not None:
            shared = await self._share(payload)
        if not shared:  # this instance's viewers only: no need to read it back
            self._deliver(batch, payload)

    # --- batches out -----------------------------------------------------------------

    def receive(self, payload: str) -> None:
        """A batch from any instance (this one included), as the store's pub/sub reads it:
        apply it, push it to viewers."""
        changes, dropped = decode_batch(payload)
        if dropped:
            self.counters["changes_dropped"] += dropped
            log_event(
                logger,
                RendezvousEvent.REGISTRY_MESSAGE_INVALID,
                f"Ignored {dropped} unreadable fleet change(s) on the shared channel",
                level=logging.WARNING,
                reason=str(payload)[:200],
            )
        if changes:
            self._deliver(changes, encode_batch(changes) if dropped else payload.encode())

    def _deliver(self, changes: list[FleetChange], payload: bytes) -> None:
        for change in changes:
            self.paths.apply(change)
            self.recent.append(change)
        self.counters["changes_received"] += len(changes)
        self.version += 1
        frame = sse_event("changes", payload)
        for viewer in self._viewers:
            viewer.push(frame)

    # --- viewers ---------------------------------------------------------------------

    def add_viewer(self) -> Viewer | None:
        """A new viewer, or None when `max_viewers` are already watching."""
        if len(self._viewers) >= self.max_viewers:
            return None
        viewer = Viewer()
        self._viewers.add(viewer)
        return viewer

    def remove_viewer(self, viewer: Viewer) -> None:
        self._viewers.discard(viewer)

    def close(self) -> None:
        """End every viewer's stream (shutdown)."""
        for viewer in list(self._viewers):
            viewer.close()

    def recent_of(self, worker_id: str, limit: int = 30) -> list[dict[str, Any]]:
        events = [
            change.to_json()
            for change in reversed(self.recent)
            if worker_id in (change.fields.get("worker_id"), change.fields.get("peer_id"))
        ]
        return events[:limit]

    def describe(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "viewers": len(self._viewers), **self.counters}

    def hello(self) -> bytes:
        return sse_event("hello", orjson.dumps({"batch_sec": self.batch_sec}))
