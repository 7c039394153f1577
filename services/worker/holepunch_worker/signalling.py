"""When the worker reports its UDP endpoint to the rendezvous: a sans-I/O state machine.

The I/O layer feeds it what happened (a connection opened or closed, STUN found an
endpoint, an ack arrived, a timer expired), passing the current monotonic time, and
performs the action it returns. Rules:

- on every new connection, report the latest endpoint (the rendezvous forgets a worker
  when its WebSocket closes);
- when STUN finds an endpoint other than the one the rendezvous holds (or will hold once
  the reports in flight are processed), report it; an unchanged endpoint is not re-sent;
- while the latest report waits for its `udp_endpoint_ack`, re-send it every
  `ack_timeout` seconds; after `max_unacked_sends` sends without any ack, ask for a new
  connection (this one is not being served);
- acks answer reports in order (the WebSocket is ordered), so each ack acknowledges the
  oldest report still in flight;
- a rejected endpoint is not re-sent on a timer, only when STUN reports it again.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from holepunch_protocol import AckStatus, UdpEndpointAck, UpdateUdpEndpoint

__all__ = [
    "AckOutcome",
    "EndpointReporter",
    "ReconnectNeeded",
    "ReportState",
    "SendReport",
    "SignallingAction",
]


@dataclass(frozen=True, slots=True)
class SendReport:
    """Send `report` on the WebSocket; `resend` tells a timeout re-send from a new report."""

    report: UpdateUdpEndpoint
    resend: bool = False


@dataclass(frozen=True, slots=True)
class ReconnectNeeded:
    reason: str


SignallingAction = SendReport | ReconnectNeeded


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """What an ack acknowledged: None when no report was in flight (an unsolicited ack)."""

    report: UpdateUdpEndpoint | None
    accepted: bool


class ReportState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    NO_ENDPOINT = "no_endpoint"  # connected, STUN has found nothing yet
    AWAITING_ACK = "awaiting_ack"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"


class EndpointReporter:
    def __init__(self, ack_timeout: float, max_unacked_sends: int = 3) -> None:
        if ack_timeout <= 0:
            raise ValueError("ack_timeout must be positive")
        if max_unacked_sends < 1:
            raise ValueError("max_unacked_sends must be at least 1")
        self._ack_timeout = ack_timeout
        self._max_unacked_sends = max_unacked_sends
        self._connected = False
        self._latest: UpdateUdpEndpoint | None = None
        self._acknowledged: UpdateUdpEndpoint | None = None
        self._rejected: UpdateUdpEndpoint | None = None
        self._in_flight: deque[UpdateUdpEndpoint] = deque()
        self._last_sent_at = 0.0
        self._sends_without_ack = 0

    # ------------------------------------------------------------------ observation

    @property
    def acknowledged_endpoint(self) -> UpdateUdpEndpoint | None:
        """The endpoint the rendezvous accepted on the current connection."""
        return self._acknowledged

    @property
    def state(self) -> ReportState:
        if not self._connected:
            return ReportState.DISCONNECTED
        if self._latest is None:
            return ReportState.NO_ENDPOINT
        if self._awaiting_ack():
            return ReportState.AWAITING_ACK
        if self._latest == self._acknowledged:
            return ReportState.ACKNOWLEDGED
        return ReportState.REJECTED

    @property
    def deadline(self) -> float | None:
        """Monotonic time at which `timer_expired` must be called, or None."""
        if not self._awaiting_ack():
            return None
        return self._last_sent_at + self._ack_timeout

    # ------------------------------------------------------------------ inputs

    def connection_opened(self, now: float) -> SignallingAction | None:
        self._connected = True
        self._acknowledged = None
        self._rejected = None
        self._in_flight.clear()
        self._sends_without_ack = 0
        if self._latest is None:
            return None
        return self._send(self._latest, now, resend=False)

    def connection_closed(self) -> None:
        self._connected = False
        self._acknowledged = None
        self._rejected = None
        self._in_flight.clear()
        self._sends_without_ack = 0

    def endpoint_discovered(
        self, endpoint: UpdateUdpEndpoint, now: float
    ) -> SignallingAction | None:
        self._latest = endpoint
        if not self._connected:
            return None
        # What the rendezvous will hold once the reports in flight are processed.
        expected = self._in_flight[-1] if self._in_flight else self._acknowledged
        if endpoint == expected:
            return None
        return self._send(endpoint, now, resend=False)

    def ack_received(self, ack: UdpEndpointAck) -> AckOutcome:
        if not self._in_flight:
            return AckOutcome(report=None, accepted=ack.status is AckStatus.SUCCESS)
        report = self._in_flight.popleft()
        self._sends_without_ack = 0
        if ack.status is AckStatus.SUCCESS:
            self._acknowledged = report
            if self._rejected == report:
                self._rejected = None
            return AckOutcome(report=report, accepted=True)
        self._rejected = report
        if self._acknowledged == report:
            self._acknowledged = None
        return AckOutcome(report=report, accepted=False)

    def timer_expired(self, now: float) -> SignallingAction | None:
        deadline = self.deadline
        if deadline is None or now < deadline or self._latest is None:
            return None
        if self._sends_without_ack >= self._max_unacked_sends:
            return ReconnectNeeded(
                reason=f"no udp_endpoint_ack after {self._sends_without_ack} reports"
            )
        return self._send(self._latest, now, resend=True)

    # ------------------------------------------------------------------ internals

    def _awaiting_ack(self) -> bool:
        latest = self._latest
        return (
            self._connected
            and latest is not None
            and latest != self._acknowledged
            and latest != self._rejected
            and latest in self._in_flight
        )

    def _send(self, endpoint: UpdateUdpEndpoint, now: float, *, resend: bool) -> SendReport:
        if self._rejected == endpoint:
            self._rejected = None  # reported again: wait for its ack again
        self._in_flight.append(endpoint)
        self._last_sent_at = now
        self._sends_without_ack += 1
        return SendReport(report=endpoint, resend=resend)
