"""The worker's probe budget: how much unanswered UDP it sends, so it never becomes a reflector.

Pure, on the caller's clock. An introduction names an address the worker then probes;
anyone who can get introduced could name a third party's address (issue 11, Reflection).
Two limits bound what reaches any address that never answered:

- at most `max_new_addresses_per_min` distinct addresses start being probed in any 60 s
  (an introduction to another one is not started: `admit` says no);
- at most `probes_per_address_per_min` punch probes go to one address in any 60 s,
  whichever sessions send them (`allow_probe`), so many sessions naming the same address
  send no more than one.

Only probes before a session has heard its peer directly are charged: after an authentic
datagram from the address, traffic to it is the peer's own conversation.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_PROBE_LIMITS", "ProbeBudget", "ProbeLimits"]

Address = tuple[str, int]

WINDOW_SEC = 60.0


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    # A punch sends deadline / interval probes (5 s / 0.15 s: 34) and a relayed session an
    # upgrade burst of 8 every 20 s: one session's first minute stays well under 60.
    probes_per_address_per_min: int = 60
    max_new_addresses_per_min: int = 32


DEFAULT_PROBE_LIMITS = ProbeLimits()


class ProbeBudget:
    """Sliding 60 s windows: new addresses admitted, and probes sent to each address."""

    def __init__(self, limits: ProbeLimits = DEFAULT_PROBE_LIMITS) -> None:
        self.limits = limits
        self._admitted: deque[tuple[float, Address]] = deque()
        self._probes: dict[Address, deque[float]] = {}
        self.addresses_refused = 0
        self.probes_refused = 0
        self.probes_sent = 0

    def admit(self, addr: Address, now: float) -> bool:
        """Whether a new session may probe `addr`: yes if it was admitted within the
        window, or if fewer than `max_new_addresses_per_min` were."""
        self._expire(now)
        if any(seen == addr for _, seen in self._admitted):
            return True
        if len(self._admitted) >= self.limits.max_new_addresses_per_min:
            self.addresses_refused += 1
            return False
        self._admitted.append((now, addr))
        return True

    def allow_probe(self, addr: Address, now: float) -> bool:
        """Charge one probe to `addr`; False (and counted) when its window is full."""
        self._expire(now)
        sent = self._probes.setdefault(addr, deque())
        if len(sent) >= self.limits.probes_per_address_per_min:
            self.probes_refused += 1
            return False
        sent.append(now)
        self.probes_sent += 1
        return True

    def status(self) -> dict[str, Any]:
        return {
            "probes_per_address_per_min": self.limits.probes_per_address_per_min,
            "max_new_addresses_per_min": self.limits.max_new_addresses_per_min,
            "addresses_in_window": len(self._admitted),
            "probes_sent": self.probes_sent,
            "probes_refused": self.probes_refused,
            "addresses_refused": self.addresses_refused,
        }

    def _expire(self, now: float) -> None:
        horizon = now - WINDOW_SEC
        while self._admitted and self._admitted[0][0] <= horizon:
            self._admitted.popleft()
        for addr, sent in list(self._probes.items()):
            while sent and sent[0] <= horizon:
                sent.popleft()
            if not sent:
                del self._probes[addr]
