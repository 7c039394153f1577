"""Punch sessions: introductions between two workers, their results, and relay limits.

Pure state, no I/O. A session is made when one worker asks to be introduced to another;
both get its id and secret. It ends when either worker disconnects; ended sessions are
kept, bounded, for the debug listing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from holepunch_protocol import SECRET_BYTES, SESSION_ID_BYTES, PunchResult, PunchStatus

from holepunch_rendezvous.budgets import (
    DEFAULT_CAPS,
    CapLimits,
    IntroductionCaps,
    RelayBudgets,
    TokenBucket,
)

__all__ = [
    "DEFAULT_RELAY_LIMITS",
    "PunchSessionRecord",
    "PunchSessionTable",
    "RelayLimits",
]


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """How much one punch session may relay through the rendezvous."""

    datagrams_per_sec: float = 100.0
    bytes_per_sec: float = 64 * 1024.0


DEFAULT_RELAY_LIMITS = RelayLimits()


@dataclass(slots=True)
class PunchSessionRecord:
    session_id: str
    secret: str
    initiator: str
    responder: str
    created_at: float
    relay_first: bool
    results: dict[str, PunchResult] = field(default_factory=dict)
    relayed_datagrams: int = 0
    relayed_bytes: int = 0
    relay_refused: int = 0
    ended_at: float | None = None
    _datagram_budget: TokenBucket | None = None
    _byte_budget: TokenBucket | None = None

    def members(self) -> tuple[str, str]:
        return (self.initiator, self.responder)

    def peer_of(self, worker_id: str) -> str | None:
        if worker_id == self.initiator:
            return self.responder
        if worker_id == self.responder:
            return self.initiator
        return None

    def allow_relay(self, size: int, now: float, limits: RelayLimits) -> bool:
        if self._datagram_budget is None or self._byte_budget is None:
            self._datagram_budget = TokenBucket(limits.datagrams_per_sec, limits.datagrams_per_sec)
            self._byte_budget = TokenBucket(limits.bytes_per_sec, limits.bytes_per_sec)
        if not (self._datagram_budget.allow(1, now) and self._byte_budget.allow(size, now)):
            self.relay_refused += 1
            return False
        self.relayed_datagrams += 1
        self.relayed_bytes += size
        return True


def _random_hex(size: int) -> str:
    return os.urandom(size).hex()


class PunchSessionTable:
    """The punch sessions this rendezvous introduced, active and recently ended, by id.

    (The worker's `PunchSessions` in holepunch_worker.punch is the other side: its own
    running sessions.)
    """

    def __init__(
        self,
        limits: RelayLimits | None = None,
        keep_ended: int = 1000,
        random_hex: Callable[[int], str] = _random_hex,
        caps: CapLimits | None = None,
    ) -> None:
        self.limits = limits or DEFAULT_RELAY_LIMITS
        caps = caps or DEFAULT_CAPS
        self.caps = IntroductionCaps(caps)
        self.relay_budgets = RelayBudgets(caps)
        self._active: dict[str, PunchSessionRecord] = {}
        self._by_worker: dict[str, set[str]] = {}
        self._ended: deque[PunchSessionRecord] = deque(maxlen=keep_ended)
        self._random_hex = random_hex

    def __len__(self) -> int:
        return len(self._active)

    def active(self) -> Iterator[PunchSessionRecord]:
        return iter(self._active.values())

    def ended(self) -> Iterator[PunchSessionRecord]:
        return iter(self._ended)

    def get(self, session_id: str) -> PunchSessionRecord | None:
        return self._active.get(session_id)

    def count_of(self, worker_id: str, *, except_with: str | None = None) -> int:
        """How many live sessions `worker_id` is in (not counting one with `except_with`).

        A session a member reported `failed` is over for the workers (they ended it) and
        is not counted, though it stays listed until a member disconnects: otherwise
        introductions that could never work would hold a worker at its cap.
        """
        count = 0
        for session_id in self._by_worker.get(worker_id, ()):
            session = self._active.get(session_id)
            if (
                session is not None
                and session.peer_of(worker_id) != except_with
                and not any(r.status is PunchStatus.FAILED for r in session.results.values())
            ):
                count += 1
        return count

    def create(
        self, initiator: str, responder: str, now: float, *, relay_first: bool
    ) -> PunchSessionRecord:
        # A new introduction of the same two workers replaces their old session, as the
        # workers themselves do: it would otherwise stay active until one disconnects.
        pair = {initiator, responder}
        for session_id in list(self._by_worker.get(initiator, ())):
            old = self._active.get(session_id)
            if old is not None and set(old.members()) == pair:
                self._end(old, now)
        session = PunchSessionRecord(
            session_id=self._random_hex(SESSION_ID_BYTES),
            secret=self._random_hex(SECRET_BYTES),
            initiator=initiator,
            responder=responder,
            created_at=now,
            relay_first=relay_first,
        )
        self._active[session.session_id] = session
        for worker_id in session.members():
            self._by_worker.setdefault(worker_id, set()).add(session.session_id)
        return session

    def adopt(self, session: PunchSessionRecord) -> None:
        """Track a session made elsewhere (another instance, through the shared registry)."""
        if session.session_id in self._active:
            return
        self._active[session.session_id] = session
        for worker_id in session.members():
            self._by_worker.setdefault(worker_id, set()).add(session.session_id)

    def end_sessions_of(self, worker_id: str, now: float) -> list[PunchSessionRecord]:
        """End every session `worker_id` is in (it disconnected); return them."""
        ended = []
        for session_id in list(self._by_worker.get(worker_id, ())):
            session = self._active.get(session_id)
            if session is not None:
                self._end(session, now)
                ended.append(session)
        self._by_worker.pop(worker_id, None)
        return ended

    def _end(self, session: PunchSessionRecord, now: float) -> None:
        del self._active[session.session_id]
        for member in session.members():
            sessions_of_member = self._by_worker.get(member)
            if sessions_of_member is not None:
                sessions_of_member.discard(session.session_id)
                if not sessions_of_member:
                    del self._by_worker[member]
        session.ended_at = now
        self._ended.append(session)
