"""LogThrottle: the first occurrence is logged, then at most one per interval, each
logged line knowing how many went unlogged before it."""

from __future__ import annotations

from holepunch_logging import LogThrottle


def test_one_line_per_interval_counting_the_rest() -> None:
    throttle = LogThrottle(10.0)
    assert throttle.due(100.0) == 0  # the first is logged
    assert [throttle.due(t) for t in (101.0, 105.0, 109.9)] == [None, None, None]
    assert throttle.due(110.0) == 3  # the next line says three went unlogged
    assert throttle.due(110.1) is None
    assert throttle.due(200.0) == 1


def test_a_quiet_period_starts_afresh() -> None:
    throttle = LogThrottle(1.0)
    assert throttle.due(0.0) == 0
    assert throttle.due(50.0) == 0
