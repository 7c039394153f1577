"""UDP flows by key, capped, forgotten when idle: pure, the caller passes the time.

UDP has no connection to end, so a flow (a local sender behind a forward, or a peer's
flow behind an exposed port) lives while datagrams pass and is dropped `idle_timeout`
seconds after the last one, as a NAT's conntrack entry would be.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["FlowTable"]

K = TypeVar("K")
V = TypeVar("V")


class FlowTable(Generic[K, V]):
    def __init__(self, *, max_flows: int, idle_timeout: float) -> None:
        if max_flows < 1 or idle_timeout <= 0:
            raise ValueError("max_flows must be at least 1 and idle_timeout above 0")
        self.max_flows = max_flows
        self.idle_timeout = idle_timeout
        # Least recently used first: expiry stops at the first flow still in use.
        self._flows: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._flows)

    def __contains__(self, key: object) -> bool:
        return key in self._flows

    def values(self) -> list[V]:
        return [value for value, _ in self._flows.values()]

    def get(self, key: K, now: float) -> V | None:
        """The flow's value, marking it used at `now`; None when there is none."""
        entry = self._flows.get(key)
        if entry is None:
            return None
        self._flows[key] = (entry[0], now)
        self._flows.move_to_end(key)
        return entry[0]

    def add(self, key: K, value: V, now: float) -> list[tuple[K, V]] | None:
        """Add a new flow (`key` must be absent). The idle flows it expired to make room,
        or None when the table is full of flows still in use (nothing added)."""
        if key in self._flows:
            raise KeyError(f"flow {key!r} exists")
        expired = self.expire(now)
        if len(self._flows) >= self.max_flows:
            return None
        self._flows[key] = (value, now)
        return expired

    def remove(self, key: K) -> V | None:
        entry = self._flows.pop(key, None)
        return None if entry is None else entry[0]

    def expire(self, now: float) -> list[tuple[K, V]]:
        """Remove and return the flows idle for `idle_timeout` or longer."""
        expired: list[tuple[K, V]] = []
        while self._flows:
            key, (value, last_used) = next(iter(self._flows.items()))
            if now - last_used < self.idle_timeout:
                break
            del self._flows[key]
            expired.append((key, value))
        return expired
