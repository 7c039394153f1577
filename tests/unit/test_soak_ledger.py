"""The soak's checks (holepunch_devtools.soak.Ledger): what a listing must hold, given what
the load generator knows of each worker."""

from __future__ import annotations

import pytest
from holepunch_devtools.listing import DuplicateKey, parse_listing
from holepunch_devtools.soak import Ledger, memory_problems


def entry(ip: str, port: int) -> dict[str, object]:
    return {"stun_reported_udp_ip": ip, "stun_reported_udp_port": port}


def ledger() -> Ledger:
    return Ledger(["a", "b", "c"], ttl_sec=15.0, now=0.0)


def test_a_worker_offline_for_longer_than_the_ttl_must_not_be_listed() -> None:
    book = ledger()
    book.acknowledged("a", ("198.18.0.1", 1000))
    book.went_offline("a", now=100.0)
    listed = {"a": entry("198.18.0.1", 1000)}
    assert book.check_during_churn(listed, requested_at=114.0) == []
    (problem,) = book.check_during_churn(listed, requested_at=116.0)
    assert problem.startswith("a: listed 16.0 s after it went offline")


def test_connecting_and_online_workers_may_be_listed_during_churn() -> None:
    book = ledger()
    book.acknowledged("a", ("198.18.0.1", 1000))
    book.connecting("b")
    listed = {"a": entry("198.18.0.1", 1), "b": entry("198.18.0.2", 2)}
    assert book.check_during_churn(listed, requested_at=500.0) == []


def test_going_offline_twice_keeps_the_first_moment() -> None:
    book = ledger()
    book.acknowledged("a", ("198.18.0.1", 1000))
    book.went_offline("a", now=10.0)
    book.went_offline("a", now=20.0)
    assert book.workers["a"].offline_since == 10.0


def test_an_unknown_worker_listed_is_a_problem() -> None:
    assert book_problems({"zz": entry("198.18.0.9", 9)}) == ["zz: listed but never started"]


def book_problems(listed: dict[str, dict[str, object]]) -> list[str]:
    return ledger().check_during_churn(listed, requested_at=1.0)


def test_settled_listing_must_hold_exactly_the_online_workers_with_their_latest_endpoint() -> None:
    book = ledger()
    book.acknowledged("a", ("198.18.0.1", 1000))
    book.acknowledged("a", ("198.18.0.1", 2000))
    book.acknowledged("b", ("198.18.0.2", 3000))
    assert (
        book.check_settled({"a": entry("198.18.0.1", 2000), "b": entry("198.18.0.2", 3000)}) == []
    )
    assert book.check_settled({"a": entry("198.18.0.1", 1000), "c": entry("198.18.0.3", 1)}) == [
        "a: listed with ('198.18.0.1', 1000), latest is ('198.18.0.1', 2000)",
        "b: connected but not listed",
        "c: listed but not connected (offline)",
    ]


def test_a_listing_that_repeats_a_worker_is_rejected() -> None:
    body = b'{"connected_workers_count": 2, "workers": {"a": {}, "a": {}}}'
    with pytest.raises(DuplicateKey, match="listed twice"):
        parse_listing(body)
    assert parse_listing(b'{"workers": {"a": {}, "b": {}}}') == {"workers": {"a": {}, "b": {}}}


def memory(early_mib: float, late_mib: float) -> dict[str, float]:
    return {
        "early": early_mib * 1024,
        "late": late_mib * 1024,
        "growth": (late_mib - early_mib) * 1024,
    }


def test_rss_growing_past_the_limit_fails_a_long_soak() -> None:
    (problem,) = memory_problems(memory(90.0, 106.0), 8.0, 600.0, "instance A's RSS")
    assert problem == (
        "instance A's RSS grew 16.0 MiB (90.0 MiB at 20-35 % of the run, 106.0 MiB in its "
        "last 10 %), more than 8 MiB"
    )


def test_rss_within_the_limit_or_shrinking_passes() -> None:
    assert memory_problems(memory(90.0, 97.5), 8.0, 600.0, "A") == []
    assert memory_problems(memory(90.0, 80.0), 8.0, 600.0, "A") == []


def test_a_short_soak_is_not_judged_on_memory() -> None:
    assert memory_problems(memory(90.0, 200.0), 8.0, 20.0, "A") == []
