"""The worker's probe budget, alone and inside `PunchSessions`, on a virtual clock: the
reflection attack (many introductions naming one third party's address) with no sockets."""

from __future__ import annotations

import os

import pytest
from holepunch_env import ConfigError
from holepunch_protocol import (
    SECRET_BYTES,
    SESSION_ID_BYTES,
    MappingBehaviour,
    PeerIntroduction,
    PeerRole,
    PunchFailureReason,
    PunchResult,
    PunchStatus,
    decode_client_message,
    encode_message,
)
from holepunch_worker.config import load_config
from holepunch_worker.probe_budget import ProbeBudget, ProbeLimits
from holepunch_worker.punch import Action, LogEvent, PunchSessions, PunchTimings, Report, SendUdp

THIRD_PARTY = ("192.0.2.50", 9999)
TIMINGS = PunchTimings(interval=0.15, deadline=5.0, upgrade_interval=20.0, upgrade_burst=8)


def introduction(peer_id: str, addr: tuple[str, int]) -> PeerIntroduction:
    return PeerIntroduction(
        session_id=os.urandom(SESSION_ID_BYTES).hex(),
        peer_id=peer_id,
        peer_udp_ip=addr[0],
        peer_udp_port=addr[1],
        peer_mapping=MappingBehaviour.ENDPOINT_INDEPENDENT,
        secret=os.urandom(SECRET_BYTES).hex(),
        role=PeerRole.RESPONDER,
        relay_first=False,
    )


def test_probes_to_one_address_are_counted_in_a_sliding_minute() -> None:
    budget = ProbeBudget(ProbeLimits(probes_per_address_per_min=3))
    assert [budget.allow_probe(THIRD_PARTY, t) for t in (0.0, 1.0, 2.0, 3.0)] == [
        True,
        True,
        True,
        False,
    ]
    assert budget.allow_probe(("192.0.2.51", 1), 3.0)
    assert not budget.allow_probe(THIRD_PARTY, 59.9)
    assert budget.allow_probe(THIRD_PARTY, 60.0)
    assert budget.status()["probes_refused"] == 2


def test_new_addresses_are_admitted_up_to_the_cap_per_minute_known_ones_always() -> None:
    budget = ProbeBudget(ProbeLimits(max_new_addresses_per_min=2))
    assert budget.admit(("192.0.2.1", 1), 0.0) and budget.admit(("192.0.2.2", 1), 10.0)
    assert budget.admit(("192.0.2.1", 1), 20.0)
    assert not budget.admit(("192.0.2.3", 1), 30.0)
    assert budget.admit(("192.0.2.3", 1), 60.0)  # the first one's minute is over
    assert budget.status()["addresses_refused"] == 1


def run(sessions: PunchSessions, until: float, step: float = 0.05) -> list[Action]:
    actions: list[Action] = []
    now = 0.0
    while now <= until:
        actions += sessions.timer(now)
        now = round(now + step, 6)
    return actions


def test_many_introductions_naming_one_third_party_send_it_one_budget_a_minute() -> None:
    """Reflection, before: each introduction made ~34 probes in its 5 s (issue 11 measured
    ~30 a request). After: 50 introductions to the same address send it at most the
    per-address budget in any minute, and each one the worker did start said so."""
    sessions = PunchSessions(TIMINGS, probe_limits=ProbeLimits(probes_per_address_per_min=60))
    actions: list[Action] = []
    for n in range(50):
        actions += sessions.introduce(introduction(f"attacker-{n}", THIRD_PARTY), n * 0.4)
    actions += run(sessions, 60.0)
    to_third_party = [a for a in actions if isinstance(a, SendUdp) and a.addr == THIRD_PARTY]
    assert 50 <= len(to_third_party) <= 60
    limited = [a for a in actions if isinstance(a, LogEvent) and a.event == "punch_probes_limited"]
    assert limited and all(a.level == 30 for a in limited)
    assert sessions.status(60.0)["probe_budget"]["probes_refused"] > 0


def test_an_introduction_to_one_address_too_many_is_not_started_and_reported() -> None:
    sessions = PunchSessions(TIMINGS, probe_limits=ProbeLimits(max_new_addresses_per_min=3))
    for n in range(3):
        assert sessions.introduce(introduction(f"p{n}", ("192.0.2.10", 1000 + n)), 0.0)
    refused_intro = introduction("p3", ("192.0.2.10", 1003))
    actions = sessions.introduce(refused_intro, 1.0)
    [log] = [a for a in actions if isinstance(a, LogEvent)]
    [report] = [a for a in actions if isinstance(a, Report)]
    assert log.event == "punch_refused" and log.fields["reason"] == "probe_budget"
    assert report.result.status is PunchStatus.FAILED and report.result.attempts == 0
    assert report.result.reason is PunchFailureReason.PROBE_BUDGET
    assert not any(isinstance(a, SendUdp) for a in actions)
    assert sessions.for_peer("p3") is None and len(sessions.active()) == 3
    # The reason crosses the wire and is validated like every field.
    decoded = decode_client_message(encode_message(report.result))
    assert isinstance(decoded, PunchResult) and decoded.reason is PunchFailureReason.PROBE_BUDGET


def test_a_legitimate_punch_never_reaches_the_default_budget() -> None:
    sessions = PunchSessions(TIMINGS)
    actions = sessions.introduce(introduction("peer", ("192.0.2.20", 4000)), 0.0)
    actions += run(sessions, 60.0)
    probes = [a for a in actions if isinstance(a, SendUdp)]
    assert 30 <= len(probes) < sessions.probe_budget.limits.probes_per_address_per_min
    assert sessions.probe_budget.probes_refused == 0


def test_probe_limits_come_from_the_environment_with_bounds() -> None:
    base = {"RENDEZVOUS_SERVICE_URL": "http://127.0.0.1:1", "WORKER_ID": "w"}
    assert load_config(base).probe_limits == ProbeLimits(60, 32)
    config = load_config(
        {**base, "PUNCH_PROBES_PER_ADDRESS_PER_MIN": "10", "PUNCH_MAX_NEW_ADDRESSES_PER_MIN": "2"}
    )
    assert config.probe_limits == ProbeLimits(10, 2)
    with pytest.raises(ConfigError, match="PUNCH_PROBES_PER_ADDRESS_PER_MIN"):
        load_config({**base, "PUNCH_PROBES_PER_ADDRESS_PER_MIN": "0"})
