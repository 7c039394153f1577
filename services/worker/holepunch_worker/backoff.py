"""Reconnection delays: exponential backoff, capped, with jitter. Pure, no I/O.

`reconnect_delays()` is an endless generator; the caller takes the next delay after
each failed attempt. `after_session()` says what a closed connection does to it: only a
connection that stayed up resets the backoff, so a rendezvous that accepts and at once
drops us is not hammered; and a worker whose id another connection took waits the
longest delay, so two workers with one id do not evict each other every second.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator

from holepunch_protocol import CloseCode

__all__ = ["STABLE_SESSION_SEC", "SessionEnd", "after_session", "reconnect_delays"]

# The rendezvous turned us away: reconnecting at once would only be turned away again.
REFUSALS = frozenset(
    {
        CloseCode.POLICY_VIOLATION,
        CloseCode.UNAUTHENTICATED,
        CloseCode.FORBIDDEN,
        CloseCode.TOO_MANY_CONNECTIONS,
        CloseCode.TAG_NOT_ALLOWED,
    }
)

# A connection that lasted this long was a working one: start the backoff over.
STABLE_SESSION_SEC = 30.0


class SessionEnd(enum.Enum):
    RESET_BACKOFF = "reset_backoff"
    CONTINUE_BACKOFF = "continue_backoff"
    REPLACED = "replaced"  # wait the maximum delay
    REFUSED = "refused"  # credentials, ownership or limits: wait the maximum delay too


def after_session(duration_sec: float, close_code: int | None) -> SessionEnd:
    if close_code == CloseCode.REPLACED:
        return SessionEnd.REPLACED
    if close_code in REFUSALS:
        return SessionEnd.REFUSED
    if duration_sec >= STABLE_SESSION_SEC:
        return SessionEnd.RESET_BACKOFF
    return SessionEnd.CONTINUE_BACKOFF


def reconnect_delays(
    initial: float,
    maximum: float,
    *,
    factor: float = 2.0,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield delays: attempt n waits uniformly in [(1 - jitter) * b, b] seconds, where
    b = min(maximum, initial * factor**n).

    The jitter spreads the reconnects of many workers after a rendezvous restart; the
    lower bound keeps a worker from retrying in a tight loop.
    """
    if not 0 < initial <= maximum:
        raise ValueError("need 0 < initial <= maximum")
    if factor < 1:
        raise ValueError("factor must be at least 1")
    if not 0 <= jitter <= 1:
        raise ValueError("jitter must be within [0, 1]")
    draw = rng if rng is not None else random.Random()
    ceiling = initial
    while True:
        yield ceiling * (1.0 - jitter * draw.random())
        ceiling = min(maximum, ceiling * factor)
