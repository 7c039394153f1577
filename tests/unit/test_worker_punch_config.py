"""The worker's punching settings: PUNCH_*, PEER_ECHO_TIMEOUT_SEC and CONNECT_TO."""

from __future__ import annotations

import pytest
from holepunch_worker.config import ConfigError, load_config
from holepunch_worker.punch import PunchTimings

BASE = {"RENDEZVOUS_SERVICE_URL": "http://127.0.0.1:8080", "WORKER_ID": "w-1"}


def test_defaults() -> None:
    config = load_config(BASE)
    assert config.punch == PunchTimings()
    timings = config.punch
    assert (timings.interval, timings.deadline, timings.upgrade_interval) == (0.15, 5.0, 20.0)
    assert (timings.keepalive, timings.idle_timeout) == (15.0, 45.0)
    assert config.peer_echo_timeout_sec == 5.0
    assert config.connect_to == ()


def test_values_and_idle_timeout_follows_keepalive() -> None:
    config = load_config(
        {
            **BASE,
            "PUNCH_INTERVAL_SEC": "0.1",
            "PUNCH_DEADLINE_SEC": "3",
            "PUNCH_KEEPALIVE_SEC": "10",
            "PUNCH_UPGRADE_INTERVAL_SEC": "15",
            "CONNECT_TO": " peer-1, peer-2 ,peer-1,",
        }
    )
    assert config.punch == PunchTimings(
        interval=0.1, deadline=3.0, keepalive=10.0, upgrade_interval=15.0, idle_timeout=30.0
    )
    assert config.connect_to == ("peer-1", "peer-2")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PUNCH_INTERVAL_SEC", "0"),
        ("PUNCH_INTERVAL_SEC", "fast"),
        ("PUNCH_DEADLINE_SEC", "-1"),
        ("PUNCH_KEEPALIVE_SEC", "30"),  # Cloud NAT forgets the mapping after 30 s
        ("PUNCH_IDLE_TIMEOUT_SEC", "15"),  # not more than the keepalive
        ("PUNCH_UPGRADE_INTERVAL_SEC", "nan"),
        ("PEER_ECHO_TIMEOUT_SEC", "0"),
        ("CONNECT_TO", "bad id"),
        ("CONNECT_TO", "w-1"),  # itself
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config({**BASE, variable: value})
    assert error.value.variable == variable
