"""Reconnection delays: exponential backoff, capped, with jitter. Pure, no I/O.

`reconnect_delays()` is an endless generator; the caller takes the next delay after
each failed attempt and starts a new generator once a connection succeeds.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["reconnect_delays"]


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
