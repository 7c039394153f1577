"""Hole punching between two introduced workers: a sans-I/O state machine per session.

The I/O layer feeds a `PunchSessions` what happened, with the current monotonic time:
an introduction from the rendezvous, a UDP datagram (with its source address), a
relayed datagram, the relay (the rendezvous WebSocket) coming and going, a timer firing;
it performs the actions returned and calls `timer` again at `next_deadline()`.

One session, from its introduction:

- *punching*: a PROBE to the peer's introduced address every `interval` until
  `deadline`, as the peer does to ours, so that both NATs see outgoing traffic before
  the other's packets arrive. A PROBE is answered with a PROBE_ACK echoing its
  timestamp (the round-trip time). Any authenticated, fresh datagram from the peer over
  UDP means the direct path is up (*connected*), and its source address is the one used
  from then on: when it differs from the introduced one it is the peer's real mapping (a
  peer-reflexive address, as in ICE; WireGuard roams the same way). A replayed datagram
  (refused by the `ReplayWindow`) moves nothing and gets no answer.
- *relayed*: with `relay_first` (a side's mapping is endpoint-dependent), or when the
  deadline passes without a direct path, datagrams go sealed through the rendezvous
  (`SendRelay`); the relay is confirmed when the peer's first datagram arrives through it,
  else the session fails one more `deadline` later. While relayed, a burst of UDP probes
  every `upgrade_interval` (announced by a PROBE through the relay, which starts the
  peer's burst too) tries to upgrade to a direct path, as Tailscale does with DERP.
- A path that works is kept alive by a KEEPALIVE after `keepalive` seconds without
  sending on it; a session from which nothing arrived for `idle_timeout` ends.
- Each side reports a `PunchResult` when its outcome changes (connected, relayed,
  failed), waiting up to `rtt_wait` for a PROBE_ACK so that the report carries an RTT.

The datagrams' payloads (PROBE timestamps, DATA sub-types) are defined with the
datagram format in `holepunch_protocol.peer_datagrams`. An echo request is answered on
the path it came by. QUIC packets (the data plane's) ride as DATA on the current path
(`send_quic`) and come out as `QuicReceived`, whichever path they came by: the session
picks the path, QUIC never sees it change.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from holepunch_logging import WorkerEvent
from holepunch_protocol import (
    MAX_APPLICATION_DATA_BYTES,
    MAX_QUIC_PACKET_BYTES,
    PUNCH_RESULT_MAX_ATTEMPTS,
    PUNCH_RESULT_MAX_MS,
    DataKind,
    PathKind,
    PeerDatagram,
    PeerIntroduction,
    PeerKind,
    PunchFailureReason,
    PunchResult,
    PunchStatus,
    ReplayWindow,
    decode_data,
    decode_probe_timestamp,
    encode_data,
    encode_probe_timestamp,
    open_peer_datagram,
    peek_session_id,
    seal_peer_datagram,
)

from holepunch_worker.probe_budget import DEFAULT_PROBE_LIMITS, ProbeBudget, ProbeLimits

__all__ = [
    "IDLE_TIMEOUT_KEEPALIVES",
    "Action",
    "Delivered",
    "DropReason",
    "EchoReplied",
    "LogEvent",
    "PunchSession",
    "PunchSessions",
    "PunchTimings",
    "QuicReceived",
    "Report",
    "SendRelay",
    "SendUdp",
    "SessionState",
]

Address = tuple[str, int]

# A direct send that the peer's side answers or keeps talking after (a reply, a KEEPALIVE, an
# echo's answer expect nothing back: their silence says nothing about the path).
_EXPECTS_TRAFFIC_BACK = frozenset({PeerKind.PROBE, PeerKind.DATA})

MAX_PENDING_ECHOES = 64
MAX_PLAUSIBLE_RTT_SEC = 60.0
_KEEPALIVE_SEC = 15.0  # well under Cloud NAT's 30 s UDP idle timeout
# Unless set on its own, a session ends after this many keepalive periods of silence.
IDLE_TIMEOUT_KEEPALIVES = 3


@dataclass(frozen=True, slots=True)
class PunchTimings:
    """Every timer of the punch sessions, in seconds, with its one default.

    The worker's config builds it from the PUNCH_* variables (docs/punching.md); the
    ones without a variable keep their default here.
    """

    interval: float = 0.15  # between punch probes
    deadline: float = 5.0  # punching gives up (then relay); the relay too, as long again
    keepalive: float = _KEEPALIVE_SEC
    upgrade_interval: float = 20.0  # relayed: a direct probe burst this often
    # Nothing from the peer this long: the session ends.
    idle_timeout: float = IDLE_TIMEOUT_KEEPALIVES * _KEEPALIVE_SEC
    upgrade_burst: int = 8  # probes per upgrade burst, `interval` apart
    relay_probe_interval: float = 0.5  # relay probes until the relay is confirmed
    rtt_wait: float = 1.0  # how long a report waits for an RTT measurement
    # Direct, sending, and nothing back this long: PROBEs check the path; unanswered as long
    # again, the session falls back to the relay (a NAT mapping expired, a path broke).
    direct_silence: float = 3.0
    drop_summary_interval: float = 10.0  # peer_datagram_dropped at most this often

    @property
    def direct_check(self) -> float:
        """`direct_silence`, short enough that the check and the move to the relay (twice
        this) finish well inside `idle_timeout`."""
        return min(self.direct_silence, self.idle_timeout / 4)

    def __post_init__(self) -> None:
        for name in (
            "interval",
            "deadline",
            "keepalive",
            "upgrade_interval",
            "idle_timeout",
            "direct_silence",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendUdp:
    addr: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class SendRelay:
    """Send `data` (a sealed datagram) in a `relay_datagram` for `session_id`."""

    session_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Report:
    result: PunchResult


@dataclass(frozen=True, slots=True)
class Delivered:
    """Application bytes from the peer."""

    peer_id: str
    payload: bytes
    path: PathKind


@dataclass(frozen=True, slots=True)
class QuicReceived:
    """A QUIC packet from the peer, for the data plane's connection with it."""

    peer_id: str
    packet: bytes


@dataclass(frozen=True, slots=True)
class EchoReplied:
    peer_id: str
    echo_id: int
    rtt_ms: float
    path: PathKind


@dataclass(frozen=True, slots=True)
class LogEvent:
    event: WorkerEvent
    message: str
    level: int = logging.INFO
    fields: dict[str, Any] = field(default_factory=dict)


Action = SendUdp | SendRelay | Report | Delivered | EchoReplied | LogEvent | QuicReceived


class SessionState(enum.StrEnum):
    PUNCHING = "punching"
    CONNECTED = "connected"  # direct path
    RELAYED = "relayed"
    FAILED = "failed"
    ENDED = "ended"


class DropReason(enum.StrEnum):
    NO_SESSION = "no_session"
    BAD_MAC = "bad_mac"  # wrong secret, or damaged
    REPLAY = "replay"
    WRONG_SESSION = "wrong_session"  # relayed under another session's id
    MALFORMED = "malformed"  # authentic, but a payload we cannot use


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# ---------------------------------------------------------------------------- session


class PunchSession:
    """One introduced peer. Use through `PunchSessions`, which routes datagrams to it."""

    def __init__(
        self,
        introduction: PeerIntroduction,
        timings: PunchTimings,
        now: float,
        *,
        relay_available: bool,
        drops: Counter[DropReason] | None = None,
        probe_budget: ProbeBudget | None = None,
    ) -> None:
        self.introduction = introduction
        self._probe_budget = probe_budget
        self.probes_refused = 0
        self._drops = drops if drops is not None else Counter()
        self.session_id = introduction.session_id
        self.session_key = bytes.fromhex(introduction.session_id)
        self.peer_id = introduction.peer_id
        # The key the rendezvous saw the peer prove (None: a keyless peer); the data
        # plane will pin it.
        self.peer_public_key = introduction.peer_public_key
        self._secret = bytes.fromhex(introduction.secret)
        self._t = timings
        self.introduced_addr: Address = (introduction.peer_udp_ip, introduction.peer_udp_port)
        self.peer_addr: Address = self.introduced_addr
        self.state = SessionState.PUNCHING
        self.path = PathKind.NONE
        self.started_at = now
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.relay_available = relay_available
        self.attempts = 0
        self.rtt_ms: dict[PathKind, float] = {}
        self.sent: Counter[PathKind] = Counter()
        self.received: Counter[PathKind] = Counter()
        self.delivered = 0
        self.dropped: Counter[DropReason] = Counter()
        self.path_changes = 0
        self._sequence = 0
        self._replay = ReplayWindow()
        self._punch_until = now + timings.deadline
        self._next_probe: float | None = now
        self._burst_left = 0
        self._relay_since: float | None = None
        self._relay_reason = ""
        self._relay_confirmed = False
        self._next_relay_probe: float | None = None
        self._next_upgrade: float | None = None
        self._last_burst_at: float | None = None
        self._direct = False
        self._last_direct_received: float | None = None
        self._unanswered_since: float | None = None  # the first direct send since the peer spoke
        self._direct_check_since: float | None = None  # PROBEs asking whether direct still works
        self._last_received: float | None = None
        self._last_sent: dict[PathKind, float] = {}
        self._report_due: float | None = None
        self._reported: tuple[PunchStatus, PathKind] | None = None
        self._echoes: dict[int, float] = {}
        self._next_echo_id = 1

    # ------------------------------------------------------------------ observation

    @property
    def last_received_at(self) -> float | None:
        """When the last authentic datagram from the peer arrived (either path)."""
        return self._last_received

    @property
    def ended(self) -> bool:
        return self.state in (SessionState.FAILED, SessionState.ENDED)

    def _fields(self, **extra: Any) -> dict[str, Any]:
        return {"session_id": self.session_id, "peer_id": self.peer_id, **extra}

    def status(self, now: float) -> dict[str, Any]:
        peer = self.peer_addr if self.path is PathKind.DIRECT else None
        return {
            "peer_id": self.peer_id,
            "peer_public_key": self.peer_public_key,
            "session_id": self.session_id,
            "role": self.introduction.role.value,
            "state": self.state.value,
            "path": self.path.value,
            "relay_first": self.introduction.relay_first,
            "introduced_peer": {"ip": self.introduced_addr[0], "port": self.introduced_addr[1]},
            "peer_address": None if peer is None else {"ip": peer[0], "port": peer[1]},
            "attempts": self.attempts,
            "rtt_ms": self.rtt_ms.get(self.path),
            "age_s": round((self.ended_at or now) - self.started_at, 3),
            "path_changes": self.path_changes,
            "datagrams_sent": {
                "direct": self.sent[PathKind.DIRECT],
                "relay": self.sent[PathKind.RELAY],
            },
            "datagrams_received": {
                "direct": self.received[PathKind.DIRECT],
                "relay": self.received[PathKind.RELAY],
            },
            "delivered": self.delivered,
            "dropped": {reason.value: count for reason, count in self.dropped.items()},
            "probes_refused": self.probes_refused,
            "end_reason": self.end_reason,
        }

    def next_deadline(self) -> float | None:
        if self.ended:
            return None
        times: list[float | None] = [self._report_due]
        if not self._direct:
            if self._next_probe is not None and (
                self._burst_left > 0 or self._next_probe < self._punch_until
            ):
                times.append(self._next_probe)
            if self.path is PathKind.NONE:
                times.append(self._punch_until)
            if self.path is PathKind.RELAY:
                times.append(self._next_upgrade)
                if not self._relay_confirmed:
                    assert self._relay_since is not None
                    times.append(self._relay_since + self._t.deadline)
                    if self.relay_available:
                        times.append(self._next_relay_probe)
        elif self.relay_available:
            times.append(self._direct_check_due())
        keepalive = self._keepalive_path()
        if keepalive is not None:
            times.append(self._last_sent.get(keepalive, self.started_at) + self._t.keepalive)
        if self._last_received is not None:
            times.append(self._last_received + self._t.idle_timeout)
        return min((t for t in times if t is not None), default=None)

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Action]:
        intro = self.introduction
        actions: list[Action] = [
            LogEvent(
                WorkerEvent.PEER_INTRODUCED,
                f"introduced to peer {self.peer_id} as {intro.role.value}",
                fields=self._fields(
                    role=intro.role.value,
                    peer_udp_ip=self.introduced_addr[0],
                    peer_udp_port=self.introduced_addr[1],
                    peer_mapping=None if intro.peer_mapping is None else intro.peer_mapping.value,
                    relay_first=intro.relay_first,
                ),
            ),
            LogEvent(
                WorkerEvent.PUNCH_STARTED,
                f"punching towards {self.introduced_addr[0]}:{self.introduced_addr[1]}",
                fields=self._fields(
                    peer_udp_ip=self.introduced_addr[0],
                    peer_udp_port=self.introduced_addr[1],
                    interval_s=self._t.interval,
                    deadline_s=self._t.deadline,
                ),
            ),
        ]
        if intro.relay_first:
            self._begin_relay(now, "relay_first")
        actions += self.timer(now)
        return actions

    def set_relay_available(self, available: bool, now: float) -> list[Action]:
        self.relay_available = available
        if available and self._next_relay_probe is not None:
            self._next_relay_probe = min(self._next_relay_probe, now)
        return self.timer(now)

    def timer(self, now: float) -> list[Action]:
        if self.ended:
            return []
        actions: list[Action] = []
        t = self._t
        if self._last_received is not None and now >= self._last_received + t.idle_timeout:
            return self.end(now, "idle")
        if self._direct and self.relay_available:
            actions += self._check_direct(now)
        if not self._direct:
            # Punch probes (the first phase) and upgrade bursts.
            probing = self._burst_left > 0 or now < self._punch_until
            if not probing:
                self._next_probe = None  # until the next upgrade burst
            elif self._next_probe is not None and now >= self._next_probe:
                actions += self._probe_udp(now)
                if now >= self._punch_until:
                    self._burst_left -= 1
                self._next_probe = now + t.interval
            if self.path is PathKind.NONE and now >= self._punch_until:
                actions += self._punch_failed(now)
                self._begin_relay(now, "punch_deadline")
            if self.path is PathKind.RELAY:
                assert self._relay_since is not None
                if not self._relay_confirmed and now >= self._relay_since + t.deadline:
                    return actions + self._fail(now)
                if (
                    not self._relay_confirmed
                    and self.relay_available
                    and self._next_relay_probe is not None
                    and now >= self._next_relay_probe
                ):
                    actions += self._send(
                        PeerKind.PROBE, encode_probe_timestamp(now), PathKind.RELAY, now
                    )
                    self._next_relay_probe = now + t.relay_probe_interval
                if self._next_upgrade is not None and now >= self._next_upgrade:
                    actions += self._start_burst(now)
                    self._next_upgrade = now + t.upgrade_interval
        if self._report_due is not None and now >= self._report_due:
            actions += self._report(now)
        keepalive = self._keepalive_path()
        if keepalive is not None and now >= self._last_sent.get(keepalive, self.started_at) + (
            t.keepalive
        ):
            actions += self._send(PeerKind.KEEPALIVE, b"", keepalive, now)
        return actions

    def datagram_received(self, data: bytes, addr: Address, now: float) -> list[Action]:
        return self._received(data, PathKind.DIRECT, addr, now)

    def relay_received(self, data: bytes, now: float) -> list[Action]:
        return self._received(data, PathKind.RELAY, None, now)

    def send_echo(self, now: float) -> tuple[int, list[Action]] | None:
        """An echo request on the current path: (echo id, actions), None with no path."""
        if not self._can_send(self.path):
            return None
        echo_id = self._next_echo_id
        self._next_echo_id += 1
        self._echoes[echo_id] = now
        while len(self._echoes) > MAX_PENDING_ECHOES:
            del self._echoes[next(iter(self._echoes))]
        payload = encode_data(DataKind.ECHO_REQUEST, echo_id=echo_id)
        return echo_id, self._send(PeerKind.DATA, payload, self.path, now)

    def send_data(self, payload: bytes, now: float) -> list[Action] | None:
        """Application bytes on the current path; None with no usable path."""
        if not self._can_send(self.path) or len(payload) > MAX_APPLICATION_DATA_BYTES:
            return None
        data = encode_data(DataKind.APPLICATION, payload)
        return self._send(PeerKind.DATA, data, self.path, now)

    def send_quic(self, packet: bytes, now: float) -> list[SendUdp | SendRelay] | None:
        """A QUIC packet on the current path; None with no usable path.

        Raises ValueError for a packet over MAX_QUIC_PACKET_BYTES (the QUIC layer is
        configured never to make one)."""
        if len(packet) > MAX_QUIC_PACKET_BYTES:
            raise ValueError(f"QUIC packet is longer than {MAX_QUIC_PACKET_BYTES} bytes")
        if not self._can_send(self.path):
            return None
        sealed = self._send(PeerKind.DATA, encode_data(DataKind.QUIC, packet), self.path, now)
        return [action for action in sealed if isinstance(action, SendUdp | SendRelay)]

    def end(self, now: float, reason: str) -> list[Action]:
        if self.ended:
            return []
        self.state = SessionState.FAILED if reason == "no_path" else SessionState.ENDED
        self.ended_at, self.end_reason = now, reason
        self._report_due = None
        return [
            LogEvent(
                WorkerEvent.PUNCH_SESSION_ENDED,
                f"session with {self.peer_id} ended: {reason}",
                fields=self._fields(
                    reason=reason,
                    path=self.path.value,
                    elapsed_ms=_ms(now - self.started_at),
                    datagrams_sent=sum(self.sent.values()),
                    datagrams_received=sum(self.received.values()),
                ),
            )
        ]

    # ------------------------------------------------------------------ receiving

    def _received(
        self, data: bytes, via: PathKind, addr: Address | None, now: float
    ) -> list[Action]:
        if self.ended:
            self._drop(DropReason.NO_SESSION)
            return []
        datagram = open_peer_datagram(self._secret, data)
        if datagram is None:
            self._drop(DropReason.BAD_MAC)
            return []
        if datagram.session_id != self.session_key:
            self._drop(DropReason.WRONG_SESSION)
            return []
        if not self._replay.accept(datagram.sequence):
            self._drop(DropReason.REPLAY)
            return []
        self._last_received = now
        self.received[via] += 1
        actions: list[Action] = []
        if via is PathKind.DIRECT:
            assert addr is not None
            self._last_direct_received = now
            self._direct_check_since = self._unanswered_since = None
            actions += self._direct_seen(addr, now)
        elif not self._relay_confirmed:
            self._relay_confirmed = True
            self._next_relay_probe = None
            if self.path is PathKind.RELAY:
                self.state = SessionState.RELAYED
                self._report_due = now + self._t.rtt_wait
        if via is PathKind.RELAY and self._direct and self._direct_check_since is None:
            # The peer talks through the relay while this side is direct: has the direct
            # path stopped working for it? Ask that path now (moments after an upgrade, the
            # peer's answer comes at once and nothing moves).
            self._direct_check_since = now
            self._next_probe = now + self._t.interval
            actions += self._send(PeerKind.PROBE, encode_probe_timestamp(now), PathKind.DIRECT, now)
        actions += self._handle(datagram, via, addr, now)
        if self._report_due is not None and self.rtt_ms.get(self.path) is not None:
            actions += self._report(now)
        return actions

    def _direct_seen(self, addr: Address, now: float) -> list[Action]:
        actions: list[Action] = []
        if addr != self.peer_addr:
            old = self.peer_addr
            self.peer_addr = addr
            self.path_changes += 1
            self.rtt_ms.pop(PathKind.DIRECT, None)
            actions.append(
                LogEvent(
                    WorkerEvent.PUNCH_PATH_CHANGED,
                    f"peer {self.peer_id} now at {addr[0]}:{addr[1]} (was {old[0]}:{old[1]})",
                    fields=self._fields(
                        from_ip=old[0],
                        from_port=old[1],
                        to_ip=addr[0],
                        to_port=addr[1],
                        reason="roaming" if self._direct else "peer_reflexive",
                        path=PathKind.DIRECT.value,
                    ),
                )
            )
            if self._direct:  # a new mapping: measure its RTT and report it
                self._report_due = now + self._t.rtt_wait
                self._reported = None
        if not self._direct:
            previous = self.path
            self._direct = True
            self.path = PathKind.DIRECT
            self.state = SessionState.CONNECTED
            self._burst_left = 0
            self._next_upgrade = None
            self._report_due = now + self._t.rtt_wait
            if previous is PathKind.RELAY:
                assert self._relay_since is not None
                actions.append(
                    LogEvent(
                        WorkerEvent.RELAY_UPGRADED,
                        f"upgraded the session with {self.peer_id} from relay to direct",
                        fields=self._fields(
                            peer_udp_ip=addr[0],
                            peer_udp_port=addr[1],
                            relayed_ms=_ms(now - self._relay_since),
                            attempts=self.attempts,
                        ),
                    )
                )
        return actions

    def _handle(
        self, datagram: PeerDatagram, via: PathKind, addr: Address | None, now: float
    ) -> list[Action]:
        kind, payload = datagram.kind, datagram.payload
        if kind is PeerKind.PROBE:
            actions = self._send(PeerKind.PROBE_ACK, payload, via, now, to=addr)
            if via is PathKind.RELAY and self.path is PathKind.RELAY:
                # The peer starts an upgrade burst: join it (Tailscale's CallMeMaybe).
                actions += self._maybe_join_burst(now)
            elif via is PathKind.DIRECT and PathKind.DIRECT not in self.rtt_ms:
                actions += self._probe_udp(now)  # for our own RTT measurement
            return actions
        if kind is PeerKind.PROBE_ACK:
            sent_at = decode_probe_timestamp(payload)
            if sent_at is None:
                self._drop(DropReason.MALFORMED)
                return []
            rtt = now - sent_at
            if 0 <= rtt <= MAX_PLAUSIBLE_RTT_SEC:
                self.rtt_ms[via] = _ms(rtt)
            return []
        if kind is PeerKind.DATA:
            data = decode_data(payload)
            if data is None:
                self._drop(DropReason.MALFORMED)
                return []
            if data.kind is DataKind.ECHO_REQUEST:
                reply = encode_data(DataKind.ECHO_REPLY, data.payload, echo_id=data.echo_id)
                return self._send(PeerKind.DATA, reply, via, now, to=addr)
            if data.kind is DataKind.ECHO_REPLY:
                echo_sent_at = self._echoes.pop(data.echo_id, None)
                if echo_sent_at is None:
                    return []
                rtt_ms = _ms(now - echo_sent_at)
                return [EchoReplied(self.peer_id, data.echo_id, rtt_ms, via)]
            if data.kind is DataKind.QUIC:
                return [QuicReceived(self.peer_id, data.payload)]
            self.delivered += 1
            return [Delivered(self.peer_id, data.payload, via)]
        return []  # KEEPALIVE: its arrival is all that matters

    def _drop(self, reason: DropReason) -> None:
        self.dropped[reason] += 1
        self._drops[reason] += 1

    # ------------------------------------------------------------------ sending

    def _can_send(self, path: PathKind) -> bool:
        if self.ended:
            return False
        if path is PathKind.DIRECT:
            return True
        return path is PathKind.RELAY and self.relay_available

    def _keepalive_path(self) -> PathKind | None:
        if self.path is PathKind.DIRECT:
            return PathKind.DIRECT
        if self.path is PathKind.RELAY and self._relay_confirmed and self.relay_available:
            return PathKind.RELAY
        return None

    def _send(
        self,
        kind: PeerKind,
        payload: bytes,
        path: PathKind,
        now: float,
        *,
        to: Address | None = None,
    ) -> list[Action]:
        if not self._can_send(path):
            return []
        data = seal_peer_datagram(self._secret, kind, self.session_key, self._sequence, payload)
        self._sequence += 1
        self.sent[path] += 1
        self._last_sent[path] = now
        if (
            path is PathKind.DIRECT
            and self._direct
            and self._unanswered_since is None
            and kind in _EXPECTS_TRAFFIC_BACK
            and not (kind is PeerKind.DATA and payload[:1] == bytes([DataKind.ECHO_REPLY]))
        ):
            self._unanswered_since = now
        if path is PathKind.RELAY:
            return [SendRelay(self.session_id, data)]
        return [SendUdp(to or self.peer_addr, data)]

    def _probe_udp(self, now: float) -> list[Action]:
        # Until the peer answered directly, the address may be anyone's: the probe budget
        # decides (a refused probe is not an attempt; the relay stays available).
        budget = self._probe_budget
        if budget is not None and not self._direct and not budget.allow_probe(self.peer_addr, now):
            self.probes_refused += 1
            if self.probes_refused > 1:
                return []
            return [
                LogEvent(
                    WorkerEvent.PUNCH_PROBES_LIMITED,
                    f"probes to {self.peer_addr[0]}:{self.peer_addr[1]} held back: "
                    f"{budget.limits.probes_per_address_per_min} a minute per address",
                    level=logging.WARNING,
                    fields=self._fields(
                        peer_udp_ip=self.peer_addr[0],
                        peer_udp_port=self.peer_addr[1],
                        probes_per_address_per_min=budget.limits.probes_per_address_per_min,
                    ),
                )
            ]
        self.attempts += 1
        return self._send(PeerKind.PROBE, encode_probe_timestamp(now), PathKind.DIRECT, now)

    def _start_burst(self, now: float) -> list[Action]:
        self._burst_left = self._t.upgrade_burst
        self._next_probe = now
        self._last_burst_at = now
        actions = self._send(PeerKind.PROBE, encode_probe_timestamp(now), PathKind.RELAY, now)
        actions += self._probe_udp(now)
        self._burst_left -= 1
        self._next_probe = now + self._t.interval
        return actions

    def _maybe_join_burst(self, now: float) -> list[Action]:
        # Not during punching or a burst, nor soon after one (or after the relay started:
        # the peer's probes confirming the relay are no announcement).
        if now < self._punch_until or self._burst_left > 0:
            return []
        last = self._last_burst_at if self._last_burst_at is not None else self._relay_since
        if last is not None and now - last < self._t.upgrade_interval / 2:
            return []
        self._next_upgrade = now + self._t.upgrade_interval
        return self._start_burst(now)

    # ------------------------------------------------------------------ outcomes

    def _direct_check_due(self) -> float | None:
        """When `_check_direct` has something to do (None: nothing sent since the peer spoke)."""
        if self._unanswered_since is None:
            return None
        if self._direct_check_since is None:
            return self._unanswered_since + self._t.direct_check
        give_up = self._direct_check_since + self._t.direct_check
        return give_up if self._next_probe is None else min(self._next_probe, give_up)

    def _check_direct(self, now: float) -> list[Action]:
        """Fall back to the relay when the direct path stopped answering.

        Silence alone is normal on an idle path (each side sends a KEEPALIVE on its own
        schedule), so only silence after this side sent counts, and it is confirmed by
        PROBEs, which the peer answers at once, before anything moves.
        """
        due = self._direct_check_due()
        if due is None or now < due:
            return []
        t = self._t
        if self._direct_check_since is None:
            self._direct_check_since = now
        elif now >= self._direct_check_since + t.direct_check:
            return self._fall_back_to_relay(now)
        self._next_probe = now + t.interval
        return self._send(PeerKind.PROBE, encode_probe_timestamp(now), PathKind.DIRECT, now)

    def _fall_back_to_relay(self, now: float) -> list[Action]:
        heard = self._last_direct_received or self.started_at
        self._direct = False
        self._direct_check_since = self._unanswered_since = None
        self._next_probe = None
        self.path_changes += 1
        self.rtt_ms.pop(PathKind.DIRECT, None)
        self._reported = None
        self._begin_relay(now, "direct_lost")
        self._next_upgrade = now + self._t.upgrade_interval
        self.state = SessionState.RELAYED if self._relay_confirmed else SessionState.PUNCHING
        return [
            LogEvent(
                WorkerEvent.DIRECT_PATH_LOST,
                f"the direct path to {self.peer_id} stopped answering: falling back to the relay",
                fields=self._fields(
                    peer_udp_ip=self.peer_addr[0],
                    peer_udp_port=self.peer_addr[1],
                    silent_ms=_ms(now - heard),
                    path=PathKind.RELAY.value,
                ),
            )
        ]

    def _begin_relay(self, now: float, reason: str) -> None:
        self.path = PathKind.RELAY
        self._relay_since = now
        self._relay_reason = reason
        self._next_relay_probe = now
        self._next_upgrade = self.started_at + self._t.deadline + self._t.upgrade_interval
        if self._relay_confirmed:
            self.state = SessionState.RELAYED
            self._report_due = now + self._t.rtt_wait

    def _punch_failed(self, now: float) -> list[Action]:
        return [
            LogEvent(
                WorkerEvent.PUNCH_FAILED,
                f"no direct path to {self.peer_id} after {self.attempts} probes; trying the relay",
                level=logging.WARNING,
                fields=self._fields(
                    attempts=self.attempts,
                    elapsed_ms=_ms(now - self.started_at),
                    peer_udp_ip=self.peer_addr[0],
                    peer_udp_port=self.peer_addr[1],
                    fallback="relay",
                ),
            )
        ]

    def _fail(self, now: float) -> list[Action]:
        result = PunchResult(
            session_id=self.session_id,
            peer_id=self.peer_id,
            status=PunchStatus.FAILED,
            path=PathKind.NONE,
            attempts=min(self.attempts, PUNCH_RESULT_MAX_ATTEMPTS),
            elapsed_ms=min(_ms(now - self.started_at), PUNCH_RESULT_MAX_MS),
        )
        self.path = PathKind.NONE
        self._reported = (PunchStatus.FAILED, PathKind.NONE)
        return [Report(result), *self.end(now, "no_path")]

    def _report(self, now: float) -> list[Action]:
        self._report_due = None
        if self.path is PathKind.DIRECT:
            status = PunchStatus.CONNECTED
        elif self.path is PathKind.RELAY and self._relay_confirmed:
            status = PunchStatus.RELAYED
        else:
            return []
        if self._reported == (status, self.path):
            return []
        self._reported = (status, self.path)
        rtt = self.rtt_ms.get(self.path)
        elapsed = _ms(now - self.started_at)
        direct = self.path is PathKind.DIRECT
        result = PunchResult(
            session_id=self.session_id,
            peer_id=self.peer_id,
            status=status,
            path=self.path,
            attempts=min(self.attempts, PUNCH_RESULT_MAX_ATTEMPTS),
            elapsed_ms=min(elapsed, PUNCH_RESULT_MAX_MS),
            rtt_ms=rtt,
            peer_udp_ip=self.peer_addr[0] if direct else None,
            peer_udp_port=self.peer_addr[1] if direct else None,
        )
        if direct:
            log = LogEvent(
                WorkerEvent.PUNCH_CONNECTED,
                f"direct path to {self.peer_id} at {self.peer_addr[0]}:{self.peer_addr[1]}",
                fields=self._fields(
                    peer_udp_ip=self.peer_addr[0],
                    peer_udp_port=self.peer_addr[1],
                    peer_reflexive=self.peer_addr != self.introduced_addr,
                    attempts=self.attempts,
                    elapsed_ms=elapsed,
                    rtt_ms=rtt,
                    upgraded=self._relay_since is not None,
                ),
            )
        else:
            log = LogEvent(
                WorkerEvent.RELAY_STARTED,
                f"relaying datagrams to {self.peer_id} through the rendezvous",
                fields=self._fields(
                    reason=self._relay_reason,
                    attempts=self.attempts,
                    elapsed_ms=elapsed,
                    rtt_ms=rtt,
                ),
            )
        return [log, Report(result)]


# ---------------------------------------------------------------------------- sessions


class PunchSessions:
    """Every session of one worker, by session id; routes datagrams and summarises drops."""

    def __init__(
        self,
        timings: PunchTimings,
        *,
        keep_ended: int = 16,
        probe_limits: ProbeLimits = DEFAULT_PROBE_LIMITS,
    ) -> None:
        self.timings = timings
        self.probe_budget = ProbeBudget(probe_limits)
        self.relay_available = False
        self._sessions: dict[bytes, PunchSession] = {}
        self._ended: deque[PunchSession] = deque(maxlen=keep_ended)
        self.dropped_no_session = 0
        self.drops: Counter[DropReason] = Counter()
        self._drops_logged: Counter[str] = Counter()
        self._last_drop_summary: float | None = None

    # ------------------------------------------------------------------ observation

    def active(self) -> list[PunchSession]:
        return list(self._sessions.values())

    def for_peer(self, peer_id: str) -> PunchSession | None:
        return next((s for s in self._sessions.values() if s.peer_id == peer_id), None)

    def last_ended(self, peer_id: str) -> PunchSession | None:
        """The most recent ended session with `peer_id` still remembered, if any."""
        return next((s for s in reversed(self._ended) if s.peer_id == peer_id), None)

    def status(self, now: float) -> dict[str, Any]:
        return {
            "sessions": [s.status(now) for s in self._sessions.values()],
            "ended_sessions": [s.status(now) for s in self._ended],
            "dropped_no_session": self.dropped_no_session,
            "probe_budget": self.probe_budget.status(),
        }

    def next_deadline(self) -> float | None:
        times = [s.next_deadline() for s in self._sessions.values()]
        if self._drops_unlogged() and self._last_drop_summary is not None:
            times.append(self._last_drop_summary + self.timings.drop_summary_interval)
        return min((t for t in times if t is not None), default=None)

    # ------------------------------------------------------------------ inputs

    def introduce(self, introduction: PeerIntroduction, now: float) -> list[Action]:
        actions: list[Action] = []
        key = bytes.fromhex(introduction.session_id)
        if key in self._sessions:
            return []  # a duplicate introduction changes nothing
        address = (introduction.peer_udp_ip, introduction.peer_udp_port)
        if not self.probe_budget.admit(address, now):
            return self._refuse(introduction, address)
        previous = self.for_peer(introduction.peer_id)
        if previous is not None:
            actions += previous.end(now, "replaced")
        session = PunchSession(
            introduction,
            self.timings,
            now,
            relay_available=self.relay_available,
            drops=self.drops,
            probe_budget=self.probe_budget,
        )
        self._sessions[key] = session
        actions += session.start(now)
        return self._tidy(actions, now)

    def datagram_received(self, data: bytes, addr: Address, now: float) -> list[Action]:
        key = peek_session_id(data)
        session = None if key is None else self._sessions.get(key)
        if session is None:
            self.dropped_no_session += 1
            self.drops[DropReason.NO_SESSION] += 1
            return self._tidy([], now)
        return self._tidy(session.datagram_received(data, addr, now), now)

    def relay_received(self, session_id: str, data: bytes, now: float) -> list[Action]:
        session = self._sessions.get(bytes.fromhex(session_id))
        if session is None:
            self.dropped_no_session += 1
            self.drops[DropReason.NO_SESSION] += 1
            return self._tidy([], now)
        if peek_session_id(data) != session.session_key:
            session._drop(DropReason.WRONG_SESSION)
            return self._tidy([], now)
        return self._tidy(session.relay_received(data, now), now)

    def set_relay_available(self, available: bool, now: float) -> list[Action]:
        self.relay_available = available
        actions: list[Action] = []
        for session in self.active():
            actions += session.set_relay_available(available, now)
        return self._tidy(actions, now)

    def timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for session in self.active():
            actions += session.timer(now)
        return self._tidy(actions, now)

    def close_all(self, now: float, reason: str = "shutdown") -> list[Action]:
        actions: list[Action] = []
        for session in self.active():
            actions += session.end(now, reason)
        return self._tidy(actions, now)

    # ------------------------------------------------------------------ internals

    def _refuse(self, introduction: PeerIntroduction, address: Address) -> list[Action]:
        """An introduction towards one address too many this minute: not started, and
        said so, to the rendezvous (a failed result with its reason) and in the log."""
        limit = self.probe_budget.limits.max_new_addresses_per_min
        result = PunchResult(
            session_id=introduction.session_id,
            peer_id=introduction.peer_id,
            status=PunchStatus.FAILED,
            path=PathKind.NONE,
            attempts=0,
            elapsed_ms=0.0,
            reason=PunchFailureReason.PROBE_BUDGET,
        )
        log = LogEvent(
            WorkerEvent.PUNCH_REFUSED,
            f"not punching to {address[0]}:{address[1]} for {introduction.peer_id}: "
            f"already probing {limit} new addresses this minute",
            level=logging.WARNING,
            fields={
                "session_id": introduction.session_id,
                "peer_id": introduction.peer_id,
                "peer_udp_ip": address[0],
                "peer_udp_port": address[1],
                "reason": PunchFailureReason.PROBE_BUDGET.value,
                "max_new_addresses_per_min": limit,
            },
        )
        return [log, Report(result)]

    def _drops_unlogged(self) -> bool:
        # Checked for every datagram (each QUIC packet is one): sums, not a Counter
        # comparison; counts only grow, so equal totals mean nothing new.
        return self.drops.total() != self._drops_logged.total()

    def _drop_counts(self) -> Counter[str]:
        return Counter({reason.value: count for reason, count in self.drops.items()})

    def _tidy(self, actions: list[Action], now: float) -> list[Action]:
        for key, session in list(self._sessions.items()):
            if session.ended:
                del self._sessions[key]
                self._ended.append(session)
        if self._drops_unlogged() and (
            self._last_drop_summary is None
            or now >= self._last_drop_summary + self.timings.drop_summary_interval
        ):
            counts = self._drop_counts()
            new = counts - self._drops_logged
            self._drops_logged = counts
            self._last_drop_summary = now
            actions.append(
                LogEvent(
                    WorkerEvent.PEER_DATAGRAM_DROPPED,
                    f"dropped {sum(new.values())} peer datagrams",
                    fields={
                        "count": sum(new.values()),
                        "reasons": dict(new),
                        "total": sum(counts.values()),
                    },
                )
            )
        return actions
