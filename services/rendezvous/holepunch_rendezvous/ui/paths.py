"""The picture of peer paths: every punch session the feed told of, and its state. Pure.

Built from the cluster's changes (not from this instance's session table, which holds
only the sessions made or reported here), so every instance draws the same picture. A
session's state comes from what its two sides reported: direct if either has a direct
path, else relayed if either relays, else failed if either gave up, else punching.
Sessions end when a member leaves or the pair is introduced again; a bounded number of
ended ones and of recent results stay for the drill-down.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from holepunch_protocol import iso_timestamp

from holepunch_rendezvous.ui.changes import ChangeKind, FleetChange

__all__ = ["PathBook", "PathState", "SessionPath"]

MAX_ACTIVE = 5_000
KEEP_ENDED = 200
KEEP_RESULTS = 100
MAX_DRAWN = 300


class PathState(enum.StrEnum):
    DIRECT = "direct"
    RELAYED = "relayed"
    PUNCHING = "punching"
    FAILED = "failed"


@dataclass(slots=True)
class SessionPath:
    session_id: str
    initiator: str
    responder: str
    created_at: float
    relay_first: bool
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # by reporting side
    ended_at: float | None = None

    def members(self) -> tuple[str, str]:
        return (self.initiator, self.responder)

    @property
    def state(self) -> PathState:
        reported = [(r["status"], r["path"]) for r in self.results.values()]
        if any(path == "direct" and status == "connected" for status, path in reported):
            return PathState.DIRECT
        if any(path == "relay" for _, path in reported):
            return PathState.RELAYED
        if any(status == "failed" for status, _ in reported):
            return PathState.FAILED
        return PathState.PUNCHING

    @property
    def rtt_ms(self) -> float | None:
        """The lowest RTT either side measured on the path in use."""
        wanted = {PathState.DIRECT: "direct", PathState.RELAYED: "relay"}.get(self.state)
        rtts = [
            float(r["rtt_ms"])
            for r in self.results.values()
            if r["path"] == wanted and isinstance(r.get("rtt_ms"), int | float)
        ]
        return min(rtts) if rtts else None

    def describe(self) -> dict[str, Any]:
        rtt = self.rtt_ms
        return {
            "session_id": self.session_id,
            "initiator": self.initiator,
            "responder": self.responder,
            "state": self.state.value,
            "rtt_ms": None if rtt is None else round(rtt, 1),
            "relay_first": self.relay_first,
            "created_at": iso_timestamp(self.created_at),
            "ended_at": iso_timestamp(self.ended_at),
            "results": self.results,
        }


class PathBook:
    def __init__(self, max_active: int = MAX_ACTIVE, keep_ended: int = KEEP_ENDED) -> None:
        self._active: dict[str, SessionPath] = {}  # insertion order: oldest first
        self._by_worker: dict[str, set[str]] = {}  # worker_id -> its active session ids
        self._ended: deque[SessionPath] = deque(maxlen=keep_ended)
        self._results: deque[dict[str, Any]] = deque(maxlen=KEEP_RESULTS)
        self._max_active = max_active

    def apply(self, change: FleetChange) -> None:
        fields = change.fields
        if change.kind is ChangeKind.INTRODUCED:
            self._introduced(change)
        elif change.kind is ChangeKind.PUNCH_RESULT:
            self._results.append({"at": iso_timestamp(change.at), **fields})
            session = self._active.get(fields["session_id"])
            if session is not None and fields["worker_id"] in session.members():
                session.results[fields["worker_id"]] = {
                    key: fields.get(key)
                    for key in ("status", "path", "rtt_ms", "reason", "attempts")
                }
        elif change.kind is ChangeKind.WORKER_LEFT:
            leaving = [self._active[i] for i in self._by_worker.get(change.worker_id, ())]
            for session in sorted(leaving, key=lambda session: session.created_at):
                self._end(session, change.at)

    def _introduced(self, change: FleetChange) -> None:
        fields = change.fields
        pair = {fields["worker_id"], fields["peer_id"]}
        for session_id in list(self._by_worker.get(fields["worker_id"], ())):
            old = self._active[session_id]
            if set(old.members()) == pair:  # the pair introduced again: as the table does
                self._end(old, change.at)
        if len(self._active) >= self._max_active:
            self._end(next(iter(self._active.values())), change.at)
        session = SessionPath(
            session_id=fields["session_id"],
            initiator=fields["worker_id"],
            responder=fields["peer_id"],
            created_at=change.at,
            relay_first=bool(fields.get("relay_first")),
        )
        if session.session_id in self._active:  # the same batch twice: keep the first
            return
        self._active[session.session_id] = session
        for member in session.members():
            self._by_worker.setdefault(member, set()).add(session.session_id)

    def _end(self, session: SessionPath, now: float) -> None:
        del self._active[session.session_id]
        for member in session.members():
            ids = self._by_worker.get(member)
            if ids is not None:
                ids.discard(session.session_id)
                if not ids:
                    del self._by_worker[member]
        session.ended_at = now
        self._ended.append(session)

    def picture(self, limit: int = MAX_DRAWN) -> dict[str, Any]:
        """The newest `limit` active sessions, their counts by state, and recent results."""
        active = list(self._active.values())
        counts = {state.value: 0 for state in PathState}
        for session in active:
            counts[session.state.value] += 1
        return {
            "active": len(active),
            "counts": counts,
            "sessions": [session.describe() for session in active[-limit:]],
            "recent_results": list(reversed(self._results)),
        }

    def of_worker(self, worker_id: str) -> dict[str, Any]:
        """A worker's sessions (active, then recently ended) and how many are relayed.
        (Its punch results are among the drill-down's events: `LiveFeed.recent_of`.)"""
        active = [self._active[i] for i in self._by_worker.get(worker_id, ())]
        active.sort(key=lambda session: session.created_at)
        ended = [s for s in reversed(self._ended) if worker_id in s.members()]
        settled = [s for s in active if s.state in (PathState.DIRECT, PathState.RELAYED)]
        relayed = sum(1 for s in settled if s.state is PathState.RELAYED)
        return {
            "sessions": [s.describe() for s in active],
            "ended_sessions": [s.describe() for s in ended],
            "relay_share": None if not settled else round(relayed / len(settled), 3),
        }
