"""Caps on introductions and the separate control and relay budgets, on a virtual clock."""

from __future__ import annotations

import pytest
from holepunch_protocol import (
    EchoRequest,
    ErrorCode,
    ErrorMessage,
    PathKind,
    PunchResult,
    PunchStatus,
    RelayDatagram,
    UpdateUdpEndpoint,
)
from holepunch_rendezvous.app import Rendezvous
from holepunch_rendezvous.budgets import (
    DEFAULT_CAPS,
    CapLimits,
    IntroductionCaps,
    RelayBudgets,
    charged_to_control,
)
from holepunch_rendezvous.config import ConfigError, RendezvousConfig
from holepunch_rendezvous.handler import Outcome, handle_message, introduce
from holepunch_rendezvous.punch_sessions import PunchSessionTable, RelayLimits
from holepunch_rendezvous.registry import Registry


def workers(*worker_ids: str) -> Registry:
    registry = Registry()
    for n, worker_id in enumerate(worker_ids, start=1):
        registry.connect(worker_id, n, "127.0.0.1", 1000 + n, now=0.0)
        registry.update_udp_endpoint(
            worker_id, n, UpdateUdpEndpoint("203.0.113.9", 4000 + n), now=0.0
        )
    return registry


def refusal_code(outcome: Outcome) -> str | None:
    return outcome.reply.code if isinstance(outcome.reply, ErrorMessage) else None


def test_a_worker_in_too_many_sessions_gets_no_new_one_on_either_side() -> None:
    attackers = [f"x{n}" for n in range(5)]
    registry = workers("victim", "other", *attackers)
    sessions = PunchSessionTable(caps=CapLimits(max_sessions_per_worker=3))
    for attacker in attackers[:3]:
        assert refusal_code(introduce(registry, sessions, attacker, "victim", 0.0)) is None
    as_responder = introduce(registry, sessions, attackers[3], "victim", 0.0)
    as_initiator = introduce(registry, sessions, "victim", "other", 0.0)
    assert refusal_code(as_responder) == ErrorCode.TOO_MANY_SESSIONS
    assert refusal_code(as_initiator) == ErrorCode.TOO_MANY_SESSIONS
    assert as_responder.event is not None and as_responder.event.name == "introduction_rejected"
    assert as_responder.deliveries == () and as_responder.created_session is None
    assert len(sessions) == 3


def test_sessions_a_member_reported_failed_no_longer_count() -> None:
    registry = workers("victim", "x0", "x1")
    sessions = PunchSessionTable(caps=CapLimits(max_sessions_per_worker=1))
    first = introduce(registry, sessions, "x0", "victim", 0.0).created_session
    assert first is not None
    assert refusal_code(introduce(registry, sessions, "x1", "victim", 1.0)) == "too_many_sessions"
    victim = registry.get("victim")
    assert victim is not None
    failed = PunchResult(first.session_id, "x0", PunchStatus.FAILED, PathKind.NONE, 20, 2000.0)
    handle_message(registry, sessions, "victim", victim.connection_id, failed, 3.0)
    assert refusal_code(introduce(registry, sessions, "x1", "victim", 4.0)) is None


def test_introducing_the_same_pair_again_replaces_their_session_within_the_cap() -> None:
    registry = workers("a", "b")
    sessions = PunchSessionTable(caps=CapLimits(max_sessions_per_worker=1))
    for now in (0.0, 1.0, 2.0):
        assert refusal_code(introduce(registry, sessions, "a", "b", now)) is None
    assert len(sessions) == 1


def test_introductions_to_one_target_are_limited_per_minute_whoever_asks() -> None:
    attackers = [f"x{n}" for n in range(12)]
    registry = workers("victim", "elsewhere", *attackers)
    sessions = PunchSessionTable(caps=CapLimits(introductions_per_target_per_min=6))
    codes = [refusal_code(introduce(registry, sessions, a, "victim", 0.0)) for a in attackers]
    assert codes == [None] * 6 + [ErrorCode.INTRODUCTION_RATE_LIMITED] * 6
    # Another target has its own allowance; the victim's comes back at 6 a minute.
    assert refusal_code(introduce(registry, sessions, "x0", "elsewhere", 0.0)) is None
    assert refusal_code(introduce(registry, sessions, "x7", "victim", 10.0)) is None
    assert refusal_code(introduce(registry, sessions, "x8", "victim", 10.0)) is not None


def test_introduction_caps_forget_full_buckets_of_past_targets() -> None:
    caps = IntroductionCaps(CapLimits(introductions_per_target_per_min=1))
    for n in range(5000):
        assert caps.check("a", f"t{n}", {}, float(n)) is None
    assert len(caps._per_target._buckets) < 5000
    assert caps.check("a", "t4999", {}, 4999.0) is not None


def relay(session_id: str, size: int = 100) -> RelayDatagram:
    return RelayDatagram(session_id, bytes(size))


def test_relay_answers_are_charged_to_the_initiator_of_the_session_not_the_answerer() -> None:
    """The starvation attack: many sessions made with the victim, whose answers on them
    spend the attackers' initiator budget, while the victim's own session keeps its own."""
    registry = workers("victim", "friend", "x")
    limits = CapLimits(initiator_relay_datagrams_per_sec=10, max_sessions_per_worker=100)
    sessions = PunchSessionTable(RelayLimits(datagrams_per_sec=1000), caps=limits)
    attack = introduce(registry, sessions, "x", "victim", 0.0).created_session
    legit = introduce(registry, sessions, "friend", "victim", 0.0).created_session
    assert attack is not None and legit is not None

    def send(worker_id: str, session_id: str) -> Outcome:
        record = registry.get(worker_id)
        assert record is not None
        return handle_message(
            registry, sessions, worker_id, record.connection_id, relay(session_id), 0.5
        )

    answers = [refusal_code(send("victim", attack.session_id)) for _ in range(15)]
    assert answers == [None] * 10 + [ErrorCode.RELAY_RATE_LIMITED] * 5
    assert refusal_code(send("x", attack.session_id)) == ErrorCode.RELAY_RATE_LIMITED
    assert [refusal_code(send("victim", legit.session_id)) for _ in range(10)] == [None] * 10
    assert sessions.relay_budgets.refused_by_initiator == {"x": 6}
    assert attack.relay_refused == 6 and legit.relay_refused == 0


def test_the_initiator_budget_counts_bytes_too_and_refills() -> None:
    budgets = RelayBudgets(
        CapLimits(initiator_relay_datagrams_per_sec=100, initiator_relay_bytes_per_sec=2400)
    )
    assert budgets.allow("x", 1200, 0.0) and budgets.allow("x", 1200, 0.0)
    assert not budgets.allow("x", 1200, 0.0)
    assert budgets.allow("y", 1200, 0.0)
    assert budgets.allow("x", 1200, 0.5)


def test_only_relayed_datagrams_of_the_senders_sessions_skip_the_control_budget() -> None:
    registry = workers("a", "b", "c")
    sessions = PunchSessionTable()
    session = introduce(registry, sessions, "a", "b", 0.0).created_session
    assert session is not None
    assert not charged_to_control(relay(session.session_id), session, "a")
    assert not charged_to_control(relay(session.session_id), session, "b")
    assert charged_to_control(relay(session.session_id), session, "c")
    assert charged_to_control(relay("00" * 16), None, "a")
    assert charged_to_control(EchoRequest("hi"), None, "a")
    rejected = Outcome(reply=ErrorMessage("invalid_json", "garbage"))
    assert charged_to_control(rejected, None, "a")


def test_caps_come_from_the_environment_with_bounds() -> None:
    default = RendezvousConfig.from_env({"AUTH_MODE": "none"})
    assert default.caps == DEFAULT_CAPS
    assert (
        DEFAULT_CAPS.max_sessions_per_worker,
        DEFAULT_CAPS.introductions_per_target_per_min,
    ) == (
        32,
        20,
    )
    config = RendezvousConfig.from_env(
        {
            "AUTH_MODE": "none",
            "MAX_SESSIONS_PER_WORKER": "4",
            "INTRODUCTIONS_PER_TARGET_PER_MIN": "6",
            "INITIATOR_RELAY_DATAGRAMS_PER_SEC": "50",
            "INITIATOR_RELAY_BYTES_PER_SEC": "9000",
        }
    )
    assert config.caps == CapLimits(4, 6.0, 50.0, 9000.0)
    assert Rendezvous(config).sessions.caps.limits == config.caps
    for name, value in (
        ("MAX_SESSIONS_PER_WORKER", "0"),
        ("INTRODUCTIONS_PER_TARGET_PER_MIN", "0.5"),
        ("INITIATOR_RELAY_BYTES_PER_SEC", "100"),
    ):
        with pytest.raises(ConfigError, match=name):
            RendezvousConfig.from_env({"AUTH_MODE": "none", name: value})
