"""The punching state machine, driven by a simulated network and a virtual clock: no sockets.

Two `PunchSessions` (worker A and worker B) exchange the datagrams their actions send: UDP
between their public addresses with a one-way delay, through a filter a test can change
(loss, blackholes), and relayed datagrams through a simulated rendezvous.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from holepunch_protocol import (
    SECRET_BYTES,
    SESSION_ID_BYTES,
    DataKind,
    MappingBehaviour,
    PathKind,
    PeerIntroduction,
    PeerKind,
    PeerRole,
    PunchStatus,
    encode_data,
    encode_probe_timestamp,
    open_peer_datagram,
    seal_peer_datagram,
)
from holepunch_worker.punch import (
    Action,
    Delivered,
    EchoReplied,
    LogEvent,
    PunchSessions,
    PunchTimings,
    Report,
    SendRelay,
    SendUdp,
    SessionState,
)

A_ADDR = ("198.51.100.1", 40000)
B_ADDR = ("203.0.113.2", 50000)
NOWHERE = ("192.0.2.99", 9)
ONE_WAY = 0.010
RELAY_ONE_WAY = 0.030
TIMINGS = PunchTimings(
    interval=0.1,
    deadline=2.0,
    keepalive=5.0,
    upgrade_interval=4.0,
    idle_timeout=15.0,
    upgrade_burst=5,
    relay_probe_interval=0.5,
    rtt_wait=0.5,
    drop_summary_interval=10.0,
)

UdpFilter = Callable[[str, tuple[str, int], bytes], bool]


@dataclass
class Net:
    """Worker A and worker B, their datagrams in flight, and what they did."""

    secret: bytes = field(default_factory=lambda: os.urandom(SECRET_BYTES))
    session_id: bytes = field(default_factory=lambda: os.urandom(SESSION_ID_BYTES))
    now: float = 0.0
    relay_on: bool = True
    udp_ok: UdpFilter = lambda sender, dst, data: True
    a: PunchSessions = field(default_factory=lambda: PunchSessions(TIMINGS))
    b: PunchSessions = field(default_factory=lambda: PunchSessions(TIMINGS))
    actions: dict[str, list[Action]] = field(default_factory=lambda: {"a": [], "b": []})
    udp_sent: dict[str, list[SendUdp]] = field(default_factory=lambda: {"a": [], "b": []})
    _queue: list[tuple[float, int, str, str, bytes, tuple[str, int] | None]] = field(
        default_factory=list
    )
    _seq: int = 0
    timer_lateness: float = 0.0  # a busy event loop calls timers late

    def intro(
        self, role: PeerRole, peer: str, addr: tuple[str, int], relay_first: bool
    ) -> PeerIntroduction:
        return PeerIntroduction(
            session_id=self.session_id.hex(),
            peer_id=peer,
            peer_udp_ip=addr[0],
            peer_udp_port=addr[1],
            peer_mapping=MappingBehaviour.ENDPOINT_INDEPENDENT,
            secret=self.secret.hex(),
            role=role,
            relay_first=relay_first,
        )

    def start(
        self,
        *,
        relay_first: bool = False,
        a_sees_b: tuple[str, int] = B_ADDR,
        b_sees_a: tuple[str, int] = A_ADDR,
        b_delay: float = 0.003,
    ) -> None:
        self.a.relay_available = self.b.relay_available = self.relay_on
        self.perform(
            "a",
            self.a.introduce(
                self.intro(PeerRole.INITIATOR, "worker-b", a_sees_b, relay_first), self.now
            ),
        )
        self.run_for(b_delay)
        self.perform(
            "b",
            self.b.introduce(
                self.intro(PeerRole.RESPONDER, "worker-a", b_sees_a, relay_first), self.now
            ),
        )

    # ------------------------------------------------------------------ the network

    def sessions(self, who: str) -> PunchSessions:
        return self.a if who == "a" else self.b

    def perform(self, who: str, actions: list[Action]) -> None:
        other = "b" if who == "a" else "a"
        own_addr = A_ADDR if who == "a" else B_ADDR
        other_addr = B_ADDR if who == "a" else A_ADDR
        self.actions[who] += actions
        for action in actions:
            if isinstance(action, SendUdp):
                self.udp_sent[who].append(action)
                if action.addr == other_addr and self.udp_ok(who, action.addr, action.data):
                    self._push(ONE_WAY, other, "udp", action.data, own_addr)
            elif isinstance(action, SendRelay):
                assert action.session_id == self.session_id.hex()
                assert len(action.data) <= 1200
                if self.relay_on:
                    self._push(RELAY_ONE_WAY, other, "relay", action.data, None)

    def inject_udp(self, to: str, data: bytes, source: tuple[str, int]) -> None:
        self._push(ONE_WAY, to, "udp", data, source)

    def _push(
        self, delay: float, to: str, how: str, data: bytes, src: tuple[str, int] | None
    ) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, to, how, data, src))

    def run_until(self, end: float) -> None:
        while True:
            times = [
                t + self.timer_lateness
                for t in (self.a.next_deadline(), self.b.next_deadline())
                if t is not None
            ]
            if self._queue:
                times.append(self._queue[0][0])
            if not times or min(times) > end:
                break
            self.now = max(self.now, min(times))
            if self._queue and self._queue[0][0] <= self.now:
                _, _, to, how, data, src = heapq.heappop(self._queue)
                target = self.sessions(to)
                if how == "udp":
                    assert src is not None
                    self.perform(to, target.datagram_received(data, src, self.now))
                else:
                    self.perform(to, target.relay_received(self.session_id.hex(), data, self.now))
                continue
            for who in ("a", "b"):
                deadline = self.sessions(who).next_deadline()
                if deadline is not None and deadline + self.timer_lateness <= self.now:
                    self.perform(who, self.sessions(who).timer(self.now))
                    # The I/O loop sleeps until next_deadline(): it must have moved on.
                    later = self.sessions(who).next_deadline()
                    assert later is None or later > self.now, "timer would spin"
        self.now = max(self.now, end)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def set_relay(self, on: bool) -> None:
        self.relay_on = on
        for who in ("a", "b"):
            self.perform(who, self.sessions(who).set_relay_available(on, self.now))

    # ------------------------------------------------------------------ observations

    def logs(self, who: str, event: str) -> list[LogEvent]:
        return [a for a in self.actions[who] if isinstance(a, LogEvent) and a.event == event]

    def reports(self, who: str) -> list[Report]:
        return [a for a in self.actions[who] if isinstance(a, Report)]

    def session(self, who: str):  # type: ignore[no-untyped-def]
        sessions = self.sessions(who)
        found = sessions.for_peer("worker-b" if who == "a" else "worker-a")
        assert found is not None
        return found

    def echo(self, who: str) -> EchoReplied:
        started = self.now
        sent = self.session(who).send_echo(self.now)
        assert sent is not None, "no path for an echo"
        echo_id, actions = sent
        self.perform(who, actions)
        self.run_for(1.0)
        replies = [
            a for a in self.actions[who] if isinstance(a, EchoReplied) and a.echo_id == echo_id
        ]
        assert len(replies) == 1, "no echo reply"
        assert replies[0].rtt_ms <= (self.now - started) * 1000
        return replies[0]


def udp_kinds(net: Net, who: str, secret: bytes) -> list[PeerKind]:
    kinds = []
    for send in net.udp_sent[who]:
        opened = open_peer_datagram(secret, send.data)
        assert opened is not None
        kinds.append(opened.kind)
    return kinds


# ---------------------------------------------------------------------------- direct


def test_simultaneous_probes_connect_both_sides_directly() -> None:
    net = Net()
    net.start()
    net.run_for(1.0)
    for who, peer_addr in (("a", B_ADDR), ("b", A_ADDR)):
        session = net.session(who)
        assert session.state is SessionState.CONNECTED and session.path is PathKind.DIRECT
        [report] = net.reports(who)
        result = report.result
        assert result.status is PunchStatus.CONNECTED and result.path is PathKind.DIRECT
        assert (result.peer_udp_ip, result.peer_udp_port) == peer_addr
        assert result.rtt_ms is not None and result.rtt_ms == pytest.approx(
            2 * ONE_WAY * 1000, abs=0.01
        )
        assert 1 <= result.attempts <= 3
        assert result.elapsed_ms < 100
        assert [log.event for log in net.actions[who] if isinstance(log, LogEvent)] == [
            "peer_introduced",
            "punch_started",
            "punch_connected",
        ]
        assert not net.logs(who, "punch_path_changed")
    # Probing stops once connected: nothing more until the keepalive.
    sent = len(net.udp_sent["a"])
    net.run_for(TIMINGS.keepalive - 1.5)
    assert len(net.udp_sent["a"]) == sent


def test_lost_first_probes_are_retried_until_the_nats_open() -> None:
    # Each NAT drops the peer's packets until its own host has sent a few probes: the
    # port-restricted cone's behaviour when the peers do not start at the same time.
    net = Net()
    sent_by: dict[str, int] = {"a": 0, "b": 0}

    def late_nat(sender: str, dst: tuple[str, int], data: bytes) -> bool:
        sent_by[sender] += 1
        receiver = "b" if sender == "a" else "a"
        return sent_by[receiver] >= 4

    net.udp_ok = late_nat
    net.start(b_delay=0.25)
    net.run_for(2.0)
    for who in ("a", "b"):
        [report] = net.reports(who)
        assert report.result.status is PunchStatus.CONNECTED
        assert report.result.attempts >= 4
    assert net.reports("a")[0].result.elapsed_ms > 250


def test_direct_echo_and_application_data() -> None:
    net = Net()
    net.start()
    net.run_for(1.0)
    reply = net.echo("a")
    assert reply.path is PathKind.DIRECT and reply.rtt_ms == pytest.approx(20, abs=0.01)
    sent = net.session("b").send_data(b"hello", net.now)
    assert sent is not None
    net.perform("b", sent)
    net.run_for(0.1)
    assert [a for a in net.actions["a"] if isinstance(a, Delivered)] == [
        Delivered("worker-b", b"hello", PathKind.DIRECT)
    ]
    assert net.session("a").status(net.now)["delivered"] == 1


# ---------------------------------------------------------------------------- peer-reflexive, replay, bad MACs


def test_probe_from_another_address_with_valid_mac_is_the_peers_real_mapping() -> None:
    # B is behind a symmetric NAT: the endpoint A was given (what STUN saw) is not where
    # B's packets to A come from. A learns B's real mapping from B's authenticated probes.
    net = Net()
    net.start(a_sees_b=NOWHERE)
    net.run_for(1.0)
    a = net.session("a")
    assert a.peer_addr == B_ADDR and a.path is PathKind.DIRECT
    [changed] = net.logs("a", "punch_path_changed")
    assert changed.fields["reason"] == "peer_reflexive"
    assert (changed.fields["from_ip"], changed.fields["from_port"]) == NOWHERE
    assert (changed.fields["to_ip"], changed.fields["to_port"]) == B_ADDR
    # A's first answer went to the source of B's probe, and everything since.
    first_to_b = next(i for i, s in enumerate(net.udp_sent["a"]) if s.addr == B_ADDR)
    assert all(s.addr == B_ADDR for s in net.udp_sent["a"][first_to_b:])
    for who in ("a", "b"):
        [report] = net.reports(who)
        assert report.result.status is PunchStatus.CONNECTED
    assert (
        net.reports("a")[0].result.peer_udp_ip,
        net.reports("a")[0].result.peer_udp_port,
    ) == B_ADDR
    [connected] = net.logs("a", "punch_connected")
    assert connected.fields["peer_reflexive"] is True
    assert net.echo("a").path is PathKind.DIRECT


def test_a_replayed_probe_from_another_address_cannot_move_the_path() -> None:
    net = Net()
    net.start()
    net.run_for(1.0)
    captured = [s.data for s in net.udp_sent["b"]]  # everything B sent, as an attacker saw it
    attacker = ("192.0.2.66", 6666)
    sent_before = len(net.udp_sent["a"])
    for data in captured:
        net.inject_udp("a", data, attacker)
    net.run_for(0.5)
    a = net.session("a")
    assert a.peer_addr == B_ADDR
    assert not net.logs("a", "punch_path_changed")
    assert all(s.addr != attacker for s in net.udp_sent["a"])  # no answer at all
    assert len(net.udp_sent["a"]) == sent_before
    assert a.dropped["replay"] == len(captured)
    # The first drop is logged at once, the rest summarised later, never one line each.
    [dropped] = net.logs("a", "peer_datagram_dropped")
    assert dropped.fields["reasons"] == {"replay": 1}
    net.run_for(TIMINGS.drop_summary_interval)
    assert net.logs("a", "peer_datagram_dropped")[-1].fields["total"] == len(captured)


def test_fresh_datagram_from_a_new_address_roams() -> None:
    # B's NAT gives it a new mapping (a flush): B's next authenticated datagram moves A.
    net = Net()
    net.start()
    net.run_for(1.0)
    new_b = ("203.0.113.2", 50001)
    b = net.session("b")
    sent = b.send_data(b"moved", net.now)
    assert sent is not None
    [send] = sent
    assert isinstance(send, SendUdp)
    net.inject_udp("a", send.data, new_b)
    net.run_for(0.1)
    [changed] = net.logs("a", "punch_path_changed")
    assert changed.fields["reason"] == "roaming"
    assert net.session("a").peer_addr == new_b


def test_wrong_secret_and_unknown_sessions_are_dropped_and_counted() -> None:
    net = Net()
    net.start()
    net.run_for(1.0)
    forged = seal_peer_datagram(
        os.urandom(SECRET_BYTES),
        PeerKind.DATA,
        net.session_id,
        10_000,
        encode_data(DataKind.APPLICATION, b"evil"),
    )
    stranger = seal_peer_datagram(
        net.secret, PeerKind.PROBE, os.urandom(SESSION_ID_BYTES), 1, encode_probe_timestamp(0)
    )
    attacker = ("192.0.2.66", 6666)
    sent_before = len(net.udp_sent["a"])
    net.inject_udp("a", forged, attacker)
    net.run_for(0.1)
    [first] = net.logs("a", "peer_datagram_dropped")
    assert first.fields == {"count": 1, "reasons": {"bad_mac": 1}, "total": 1}
    net.inject_udp("a", forged, B_ADDR)  # even from the peer's own address
    net.inject_udp("a", stranger, B_ADDR)
    net.inject_udp("a", forged[:-1] + bytes([forged[-1] ^ 1]), B_ADDR)
    net.run_for(TIMINGS.drop_summary_interval)
    assert not [a for a in net.actions["a"] if isinstance(a, Delivered)]
    assert set(udp_kinds(net, "a", net.secret)[sent_before:]) == {PeerKind.KEEPALIVE}
    a = net.session("a")
    assert a.peer_addr == B_ADDR and a.dropped["bad_mac"] == 3
    assert net.a.dropped_no_session == 1
    [_, summary] = net.logs("a", "peer_datagram_dropped")
    assert summary.fields == {"count": 3, "reasons": {"bad_mac": 2, "no_session": 1}, "total": 4}
    assert summary.level == logging.INFO
    # Many more drops: one more line, only after the interval.
    for _ in range(50):
        net.inject_udp("a", forged, attacker)
    net.run_for(1.0)
    assert len(net.logs("a", "peer_datagram_dropped")) == 2
    net.run_for(TIMINGS.drop_summary_interval)
    later = net.logs("a", "peer_datagram_dropped")
    assert len(later) == 3 and later[2].fields["count"] == 50 and later[2].fields["total"] == 54


# ---------------------------------------------------------------------------- relay


def test_deadline_falls_back_to_the_relay_which_carries_echoes() -> None:
    net = Net()
    net.udp_ok = lambda sender, dst, data: False  # every UDP datagram is lost
    net.start()
    net.run_for(TIMINGS.deadline - 0.01)
    assert net.session("a").state is SessionState.PUNCHING and not net.reports("a")
    net.run_for(1.0)
    for who in ("a", "b"):
        session = net.session(who)
        assert session.state is SessionState.RELAYED and session.path is PathKind.RELAY
        [failed] = net.logs(who, "punch_failed")
        assert failed.fields["fallback"] == "relay"
        assert failed.fields["attempts"] == pytest.approx(
            TIMINGS.deadline / TIMINGS.interval, abs=1
        )
        # The relay's own probes start no upgrade burst: none until `upgrade_interval`.
        assert session.attempts == failed.fields["attempts"]
        [started] = net.logs(who, "relay_started")
        assert started.fields["reason"] == "punch_deadline"
        [report] = net.reports(who)
        assert report.result.status is PunchStatus.RELAYED and report.result.path is PathKind.RELAY
        assert report.result.rtt_ms == pytest.approx(2 * RELAY_ONE_WAY * 1000, abs=0.01)
        assert report.result.peer_udp_ip is None
    reply = net.echo("b")
    assert reply.path is PathKind.RELAY and reply.rtt_ms == pytest.approx(60, abs=0.01)


def test_relay_first_starts_relayed_and_upgrades_when_direct_works() -> None:
    net = Net()
    blocked = True
    net.udp_ok = lambda sender, dst, data: not blocked
    net.start(relay_first=True)
    net.run_for(0.5)
    for who in ("a", "b"):
        assert net.session(who).state is SessionState.RELAYED
        [report] = net.reports(who)
        assert report.result.status is PunchStatus.RELAYED
        assert net.logs(who, "relay_started")[0].fields["reason"] == "relay_first"
    assert net.echo("a").path is PathKind.RELAY
    net.run_for(TIMINGS.deadline)
    assert not net.logs("a", "punch_failed")  # relay_first: the relay is the plan, not a fallback
    probes_after_punching = len(net.udp_sent["a"])
    net.run_for(1.0)
    assert len(net.udp_sent["a"]) == probes_after_punching  # quiet until the upgrade burst
    blocked = False
    # The first upgrade burst comes `upgrade_interval` after the punch deadline.
    net.run_until(TIMINGS.deadline + TIMINGS.upgrade_interval + 1.0)
    for who in ("a", "b"):
        session = net.session(who)
        assert session.state is SessionState.CONNECTED and session.path is PathKind.DIRECT
        [upgraded] = net.logs(who, "relay_upgraded")
        assert upgraded.fields["relayed_ms"] > 5000
        statuses = [r.result.status for r in net.reports(who)]
        assert statuses == [PunchStatus.RELAYED, PunchStatus.CONNECTED]
        assert net.reports(who)[-1].result.path is PathKind.DIRECT
    assert net.echo("a").path is PathKind.DIRECT


def test_upgrade_bursts_repeat_and_one_sides_burst_pulls_in_the_other() -> None:
    net = Net()
    net.udp_ok = lambda sender, dst, data: False
    net.start()
    net.run_until(TIMINGS.deadline + 1.0)
    assert net.session("a").state is SessionState.RELAYED
    bursts = []
    for n in range(3):
        before = net.session("a").attempts
        net.run_until(TIMINGS.deadline + (n + 1) * TIMINGS.upgrade_interval + 1.0)
        bursts.append(net.session("a").attempts - before)
    assert bursts == [TIMINGS.upgrade_burst] * 3
    # A burst of B's own, out of turn (B's clock differs): the relay probe starting it makes
    # A burst at once too, so that both NATs open together.
    net.run_for(TIMINGS.upgrade_interval / 2)
    net.udp_ok = lambda sender, dst, data: True
    b = net.session("b")
    net.perform("b", b._start_burst(net.now))
    net.run_for(0.5)
    assert net.session("a").path is PathKind.DIRECT and b.path is PathKind.DIRECT


def test_relay_that_never_works_ends_in_failure() -> None:
    net = Net(relay_on=False)
    net.udp_ok = lambda sender, dst, data: False
    net.start()
    net.run_until(2 * TIMINGS.deadline - 0.01)
    assert net.session("a").state is SessionState.RELAYED or net.session("a").path is PathKind.RELAY
    net.run_until(2 * TIMINGS.deadline + 0.01)
    for who in ("a", "b"):
        [report] = net.reports(who)
        assert report.result.status is PunchStatus.FAILED and report.result.path is PathKind.NONE
        [ended] = net.logs(who, "punch_session_ended")
        assert ended.fields["reason"] == "no_path"
        assert not net.sessions(who).active()
        assert net.sessions(who).status(net.now)["ended_sessions"][0]["state"] == "failed"


def test_relayed_path_pauses_without_the_rendezvous_and_direct_paths_do_not() -> None:
    net = Net()
    net.start()
    net.run_for(1.0)
    net.set_relay(False)
    assert net.echo("a").path is PathKind.DIRECT

    relayed = Net()
    relayed.udp_ok = lambda sender, dst, data: False
    relayed.start()
    relayed.run_until(TIMINGS.deadline + 1.0)
    assert relayed.session("a").state is SessionState.RELAYED
    relayed.set_relay(False)
    assert relayed.session("a").send_echo(relayed.now) is None
    relayed.set_relay(True)
    assert relayed.echo("a").path is PathKind.RELAY


@pytest.mark.parametrize("lateness", [0.0007, 0.037, 0.25])
def test_late_timers_still_fall_back_and_upgrade(lateness: float) -> None:
    net = Net(timer_lateness=lateness)
    blocked = True
    net.udp_ok = lambda sender, dst, data: not blocked
    net.start()
    net.run_until(TIMINGS.deadline + 1.0)
    assert net.session("a").state is SessionState.RELAYED
    assert net.echo("a").path is PathKind.RELAY
    blocked = False
    net.run_until(TIMINGS.deadline + TIMINGS.upgrade_interval + 2.0)
    assert net.session("a").state is SessionState.CONNECTED
    assert net.session("b").state is SessionState.CONNECTED


# ---------------------------------------------------------------------------- keepalive and idle


def test_keepalives_keep_an_idle_direct_path_open_and_traffic_defers_them() -> None:
    net = Net()
    net.start()
    net.run_for(1.0)
    start = len(net.udp_sent["a"])
    net.run_for(3 * TIMINGS.keepalive + 0.01)
    kinds = udp_kinds(net, "a", net.secret)[start:]
    assert kinds == [PeerKind.KEEPALIVE] * 3
    # Keepalives go out only when nothing else was sent for `keepalive` seconds.
    net.run_for(TIMINGS.keepalive - 1.0)
    before = len(net.udp_sent["a"])
    net.echo("a")  # one datagram
    net.run_for(TIMINGS.keepalive - 1.5)
    assert udp_kinds(net, "a", net.secret)[before:] == [PeerKind.DATA]
    assert net.session("a").state is SessionState.CONNECTED
    assert not net.logs("a", "punch_session_ended")


def test_a_silent_peer_ends_the_session_after_the_idle_timeout() -> None:
    net = Net()
    net.start()
    net.run_for(1.0)
    net.udp_ok = lambda sender, dst, data: sender == "a"  # B goes silent (dead, or its NAT)
    last_heard = net.session("a").last_received_at
    assert last_heard is not None
    net.run_until(last_heard + TIMINGS.idle_timeout - 0.01)
    assert net.session("a").state is SessionState.CONNECTED
    net.run_for(0.02)
    assert not net.a.active()
    [ended] = net.logs("a", "punch_session_ended")
    assert ended.fields["reason"] == "idle"
    assert net.a.status(net.now)["ended_sessions"][0]["state"] == "ended"
    assert net.now - last_heard >= TIMINGS.idle_timeout
    # Its datagrams are now strangers'.
    net.udp_ok = lambda sender, dst, data: True
    net.perform("b", net.session("b").timer(net.now + TIMINGS.keepalive))
    net.run_for(0.1)
    assert net.a.dropped_no_session >= 1


def test_a_new_introduction_to_the_same_peer_replaces_the_old_session() -> None:
    net = Net()
    net.start()
    net.run_for(1.0)
    old = net.session("a")
    second = Net()
    intro = second.intro(PeerRole.INITIATOR, "worker-b", B_ADDR, False)
    net.perform("a", net.a.introduce(intro, net.now))
    assert old.ended and old.end_reason == "replaced"
    assert net.session("a").session_id == second.session_id.hex()
    assert net.a.introduce(intro, net.now) == []  # a duplicate changes nothing


def test_timings_are_validated() -> None:
    with pytest.raises(ValueError, match="interval"):
        PunchTimings(interval=0)


# ---------------------------------------------------------------------------- QUIC packets (the data plane)


def test_quic_packets_ride_the_current_path_whole() -> None:
    from holepunch_protocol import MAX_QUIC_PACKET_BYTES
    from holepunch_worker.punch import QuicReceived

    net = Net()
    net.start()
    assert net.session("a").send_quic(b"early", net.now) is None  # no path yet
    net.run_for(1.0)
    packet = os.urandom(MAX_QUIC_PACKET_BYTES)
    sent = net.session("a").send_quic(packet, net.now)
    assert sent is not None
    net.perform("a", sent)
    net.run_for(0.1)
    assert [a for a in net.actions["b"] if isinstance(a, QuicReceived)] == [
        QuicReceived("worker-a", packet)
    ]
    assert net.session("b").status(net.now)["delivered"] == 0  # not application data
    with pytest.raises(ValueError, match="longer than"):
        net.session("a").send_quic(packet + b"x", net.now)
