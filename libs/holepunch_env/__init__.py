"""A service's settings read from environment variables: one error shape, one parser per
kind of value, so both services refuse a bad value in the same words.

Every parser takes the environment as a mapping (tests pass a dict) and treats an unset
or blank variable as "use the default".
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = [
    "LOG_LEVELS",
    "ConfigError",
    "env_bool",
    "env_choice",
    "env_float",
    "env_int",
    "env_log_level",
    "env_text",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A bad environment variable: `variable` names it, `detail` says what is wrong."""

    def __init__(self, variable: str, detail: str) -> None:
        super().__init__(f"{variable}: {detail}")
        self.variable = variable
        self.detail = detail


def env_text(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value, stripped; None when unset or blank."""
    value = env.get(name, "").strip()
    return value or None


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = env_text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(name, f"must be in {minimum}..{maximum}, got {value}")
    return value


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float,
    above_minimum: bool = False,
    unit: str = "",
) -> float:
    """A finite number in minimum..maximum (strictly above `minimum` if `above_minimum`);
    `unit` (e.g. "seconds") goes into the error message."""
    raw = env_text(env, name)
    if raw is None:
        return default
    what = f"a number of {unit}" if unit else "a number"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be {what}, got {raw!r}") from None
    low_ok = value > minimum if above_minimum else value >= minimum
    if not math.isfinite(value) or not low_ok or value > maximum:
        low = f"more than {minimum:g}" if above_minimum else f"at least {minimum:g}"
        suffix = f" {unit}" if unit else ""
        raise ConfigError(name, f"must be {low} and at most {maximum:g}{suffix}, got {raw}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env_text(env, name) or "").lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false (1/0, yes/no, on/off), got {raw!r}")


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env_text(env, name) or default
    if raw not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def env_log_level(env: Mapping[str, str], name: str = "LOG_LEVEL", default: str = "INFO") -> str:
    """A logging level name, in any case."""
    raw = env_text(env, name) or default
    if raw.upper() not in LOG_LEVELS:
        raise ConfigError(name, f"must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw.upper()
