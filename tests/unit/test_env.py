"""holepunch_env: the environment parsers both services share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from holepunch_env import (
    ConfigError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_log_level,
    env_text,
)


def refused(call: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as error:
        call(*args, **kwargs)
    assert str(error.value) == f"{error.value.variable}: {error.value.detail}"
    return error.value.detail


def test_unset_or_blank_means_the_default() -> None:
    for env in ({}, {"X": ""}, {"X": "   "}):
        assert env_text(env, "X") is None
        assert env_int(env, "X", 7, minimum=0, maximum=9) == 7
        assert env_float(env, "X", 0.5, minimum=0, maximum=1) == 0.5
        assert env_bool(env, "X", True) is True
        assert env_choice(env, "X", "a", ("a", "b")) == "a"
        assert env_log_level(env, "X") == "INFO"


def test_values_are_stripped_and_parsed() -> None:
    assert env_text({"X": "  v "}, "X") == "v"
    assert env_int({"X": " 9 "}, "X", 0, minimum=0, maximum=9) == 9
    assert env_float({"X": "1e3"}, "X", 0, minimum=0, maximum=1000) == 1000.0
    assert env_bool({"X": "Yes"}, "X", False) is True
    assert env_bool({"X": "off"}, "X", True) is False
    assert env_log_level({"LOG_LEVEL": "debug"}) == "DEBUG"


def test_integers_are_decimal_and_in_range() -> None:
    assert refused(env_int, {"P": "0x10"}, "P", 1, minimum=1, maximum=9) == (
        "must be an integer, got '0x10'"
    )
    assert refused(env_int, {"P": "10"}, "P", 1, minimum=1, maximum=9) == "must be in 1..9, got 10"


def test_numbers_are_finite_and_in_range() -> None:
    for raw in ("nan", "inf", "-1", "61"):
        detail = refused(env_float, {"T": raw}, "T", 1.0, minimum=0, maximum=60)
        assert detail == f"must be at least 0 and at most 60, got {raw}"
    assert refused(env_float, {"T": "soon"}, "T", 1.0, minimum=0, maximum=60) == (
        "must be a number, got 'soon'"
    )


def test_a_duration_can_exclude_its_minimum_and_names_its_unit() -> None:
    options: dict[str, Any] = {
        "minimum": 0.0,
        "maximum": 5.0,
        "above_minimum": True,
        "unit": "seconds",
    }
    assert env_float({"T": "0.001"}, "T", 1.0, **options) == 0.001
    assert refused(env_float, {"T": "0"}, "T", 1.0, **options) == (
        "must be more than 0 and at most 5 seconds, got 0"
    )


def test_booleans_and_choices_name_what_they_accept() -> None:
    assert refused(env_bool, {"B": "maybe"}, "B", False) == (
        "must be true or false (1/0, yes/no, on/off), got 'maybe'"
    )
    assert refused(env_choice, {"C": "c"}, "C", "a", ("a", "b")) == "must be one of a, b, got 'c'"
    assert refused(env_log_level, {"LOG_LEVEL": "LOUD"}) == (
        "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"
    )
