"""Caps and budgets that one party cannot spend for another: pure, on the caller's clock.

Three budgets, kept apart (issue 11, "Budgets that one party cannot spend for another"):

- control: every frame a connection sends, except a relayed datagram of one of its
  sessions, is charged to that connection (`MAX_MESSAGES_PER_SEC`); see
  `charged_to_control`.
- relay: a `relay_datagram` is charged to its session and to the session's initiator
  (`RelayBudgets`), whichever member sends it. A victim answering probes relayed on an
  attacker's session spends the attacker's budget, never its own connection's.
- probes: the worker's own (holepunch_worker.probe_budget): what it sends over UDP.

And two caps on introductions (`IntroductionCaps`): concurrent punch sessions per worker,
and introductions per target per minute. Beyond any of them the sender gets an error
code that names it; the app counts those refusals (`introductions_refused` on
/debug/registry) and the sessions count relay refusals (/debug/sessions).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from holepunch_protocol import ClientMessage, ErrorCode, RelayDatagram

if TYPE_CHECKING:
    from holepunch_rendezvous.punch_sessions import PunchSessionRecord

__all__ = [
    "DEFAULT_CAPS",
    "CapLimits",
    "IntroductionCaps",
    "IntroductionRefusal",
    "RelayBudgets",
    "TokenBucket",
    "charged_to_control",
]

# Buckets that are full again are forgotten once a table holds this many.
_PRUNE_AT = 4096


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def allow(self, cost: float, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True


@dataclass(frozen=True, slots=True)
class CapLimits:
    """`max_sessions_per_worker`: concurrent punch sessions either side may be in;
    `introductions_per_target_per_min`: introductions to one worker (as responder) per
    minute, bursts of that many; `initiator_relay_*`: what every session one worker
    initiated may relay together, per second."""

    max_sessions_per_worker: int = 32
    introductions_per_target_per_min: float = 20.0
    initiator_relay_datagrams_per_sec: float = 200.0
    initiator_relay_bytes_per_sec: float = 128 * 1024.0


DEFAULT_CAPS = CapLimits()


class _Buckets:
    """A token bucket per key, made full on first use; full ones are pruned in bulk."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str, cost: float, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.allow(cost, now)

    def _prune(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * bucket.rate >= bucket.burst:
                del self._buckets[key]


@dataclass(frozen=True, slots=True)
class IntroductionRefusal:
    """Why `IntroductionCaps.check` refused: the error code and the detail."""

    code: ErrorCode
    detail: str


class IntroductionCaps:
    """Concurrent sessions per worker and introductions per target per minute.

    `check` is asked before a session is made; its refusals are introduction_rejected
    events like the others (counted on /debug/registry by code).
    """

    def __init__(self, limits: CapLimits = DEFAULT_CAPS) -> None:
        self.limits = limits
        per_min = limits.introductions_per_target_per_min
        self._per_target = _Buckets(per_min / 60.0, per_min)

    def check(
        self,
        initiator: str,
        responder: str,
        sessions_of: dict[str, int],
        now: float,
    ) -> IntroductionRefusal | None:
        """`sessions_of`: each side's active sessions, not counting one between the two
        (a new introduction replaces it)."""
        cap = self.limits.max_sessions_per_worker
        for worker_id in (initiator, responder):
            if sessions_of.get(worker_id, 0) >= cap:
                return IntroductionRefusal(
                    ErrorCode.TOO_MANY_SESSIONS,
                    f"worker {worker_id!r} is already in {cap} punch sessions",
                )
        if not self._per_target.allow(responder, 1, now):
            return IntroductionRefusal(
                ErrorCode.INTRODUCTION_RATE_LIMITED,
                f"worker {responder!r} was asked for more than "
                f"{self.limits.introductions_per_target_per_min:g} introductions a minute",
            )
        return None


class RelayBudgets:
    """What every session one worker initiated may relay, together; each session's own
    budget stays on the session (`PunchSessionRecord.allow_relay`)."""

    def __init__(self, limits: CapLimits = DEFAULT_CAPS) -> None:
        datagrams = limits.initiator_relay_datagrams_per_sec
        size = limits.initiator_relay_bytes_per_sec
        self._datagrams = _Buckets(datagrams, datagrams)
        self._bytes = _Buckets(size, size)
        self.refused_by_initiator: Counter[str] = Counter()

    def allow(self, initiator: str, size: int, now: float) -> bool:
        """Charge one relayed datagram of `size` bytes to the initiator of its session."""
        if self._datagrams.allow(initiator, 1, now) and self._bytes.allow(initiator, size, now):
            return True
        self.refused_by_initiator[initiator] += 1
        if len(self.refused_by_initiator) > _PRUNE_AT:
            self.refused_by_initiator = Counter(dict(self.refused_by_initiator.most_common(1024)))
        return False


def charged_to_control(
    message: ClientMessage | object, session: PunchSessionRecord | None, worker_id: str
) -> bool:
    """Whether a frame is charged to the sender's control budget: everything but a
    relayed datagram of a session the sender is in (`session`: the one it names, if this
    instance knows it), which the relay budgets pay for. A frame refused before it was
    decoded (`message` is not a message) is charged to control."""
    if not isinstance(message, RelayDatagram):
        return True
    return session is None or session.peer_of(worker_id) is None
