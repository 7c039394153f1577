"""How hard the fuzz tests try: a fast profile for `make test`, a long one for `make fuzz`.

HOLEPUNCH_FUZZ_PROFILE picks the profile (`fast` unless set); HOLEPUNCH_FUZZ_EXAMPLES and
HOLEPUNCH_ATHERIS_RUNS override its two figures. tests/conftest.py registers the profiles
with hypothesis and loads the chosen one before any test module builds its settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import settings

__all__ = ["PROFILES", "FuzzProfile", "load_selected_profile", "selected_profile"]


@dataclass(frozen=True)
class FuzzProfile:
    name: str
    examples_per_property: int  # hypothesis
    atheris_runs: int


PROFILES = {
    profile.name: profile
    for profile in (
        FuzzProfile("fast", examples_per_property=300, atheris_runs=5_000),
        FuzzProfile("long", examples_per_property=10_000, atheris_runs=500_000),
    )
}


def selected_profile() -> FuzzProfile:
    name = os.environ.get("HOLEPUNCH_FUZZ_PROFILE", "fast")
    if name not in PROFILES:
        raise ValueError(f"HOLEPUNCH_FUZZ_PROFILE={name!r}: expected one of {sorted(PROFILES)}")
    chosen = PROFILES[name]
    return FuzzProfile(
        chosen.name,
        int(os.environ.get("HOLEPUNCH_FUZZ_EXAMPLES", chosen.examples_per_property)),
        int(os.environ.get("HOLEPUNCH_ATHERIS_RUNS", chosen.atheris_runs)),
    )


def load_selected_profile() -> FuzzProfile:
    """Make the selected profile hypothesis's default; settings built afterwards inherit it."""
    profile = selected_profile()
    settings.register_profile(
        f"holepunch-{profile.name}", max_examples=profile.examples_per_property, deadline=None
    )
    settings.load_profile(f"holepunch-{profile.name}")
    return profile
