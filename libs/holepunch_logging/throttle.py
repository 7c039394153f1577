"""At most one log line per interval for an event that can repeat without bound.

A flood (slow clients, refused relays) must not flood the logs too: the first occurrence
is logged, later ones within `interval_sec` are only counted, and the next line that is
logged says how many went unlogged in between. Pure: the caller passes the time.
"""

from __future__ import annotations

__all__ = ["LogThrottle"]


class LogThrottle:
    def __init__(self, interval_sec: float) -> None:
        self.interval_sec = interval_sec
        self._next_at: float | None = None
        self._unlogged = 0

    def due(self, now: float) -> int | None:
        """None: don't log this one (it is counted). Else log it, and the number returned
        is how many occurrences went unlogged since the last logged one."""
        if self._next_at is not None and now < self._next_at:
            self._unlogged += 1
            return None
        self._next_at = now + self.interval_sec
        unlogged, self._unlogged = self._unlogged, 0
        return unlogged
