"""Reconnection backoff: bounds, growth, cap and jitter."""

from __future__ import annotations

import itertools
import random

import pytest
from holepunch_protocol import CloseCode
from holepunch_worker.backoff import (
    STABLE_SESSION_SEC,
    SessionEnd,
    after_session,
    reconnect_delays,
)


def take(n: int, **kwargs: float) -> list[float]:
    initial = kwargs.pop("initial", 1.0)
    maximum = kwargs.pop("maximum", 60.0)
    return list(
        itertools.islice(reconnect_delays(initial, maximum, rng=random.Random(7), **kwargs), n)
    )


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    assert take(9, initial=0.5, maximum=30.0, jitter=0.0) == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_every_delay_stays_within_its_jittered_window() -> None:
    delays = take(200, initial=1.0, maximum=60.0, jitter=0.5)
    for attempt, delay in enumerate(delays):
        ceiling = min(60.0, 2.0**attempt)
        assert ceiling * 0.5 <= delay <= ceiling
    assert max(delays) <= 60.0


def test_jitter_spreads_workers_apart() -> None:
    capped = take(100, initial=1.0, maximum=8.0)[10:]
    assert len(set(capped)) == len(capped)  # not one synchronised value
    assert min(capped) < 6.0 < max(capped)  # and spread over the window


def test_a_seeded_generator_is_reproducible() -> None:
    assert take(20) == take(20)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0.0},
        {"initial": 2.0, "maximum": 1.0},
        {"factor": 0.5},
        {"jitter": 1.5},
    ],
)
def test_invalid_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        take(1, **kwargs)


def test_after_session_resets_only_after_a_stable_connection() -> None:
    assert after_session(STABLE_SESSION_SEC, 1001) is SessionEnd.RESET_BACKOFF
    assert after_session(3600.0, None) is SessionEnd.RESET_BACKOFF
    assert after_session(0.2, 1001) is SessionEnd.CONTINUE_BACKOFF
    assert after_session(0.2, None) is SessionEnd.CONTINUE_BACKOFF


def test_after_session_a_taken_worker_id_waits_longest_however_long_it_lasted() -> None:
    assert after_session(0.1, CloseCode.REPLACED) is SessionEnd.REPLACED
    assert after_session(3600.0, 4409) is SessionEnd.REPLACED


def test_after_session_a_refused_tag_waits_longest() -> None:
    assert after_session(0.1, CloseCode.TAG_NOT_ALLOWED) is SessionEnd.REFUSED
    assert after_session(0.1, 4422) is SessionEnd.REFUSED
