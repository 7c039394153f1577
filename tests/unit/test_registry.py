"""The registry's rules, with no sockets: ownership by connection, replacement, pages."""

from __future__ import annotations

import pytest
from holepunch_protocol import MappingBehaviour, UpdateUdpEndpoint
from holepunch_rendezvous.registry import Registry, UdpEndpoint


def test_connect_then_disconnect_removes_the_worker() -> None:
    registry = Registry()
    assert registry.connect("w1", 1, "10.0.0.1", 5000, now=1.0) is None
    assert len(registry) == 1
    assert registry.disconnect("w1", 1) is True
    assert len(registry) == 0
    assert registry.get("w1") is None


def test_newest_connection_wins_and_old_cleanup_keeps_the_new_entry() -> None:
    registry = Registry()
    registry.connect("w1", 1, "10.0.0.1", 5000, now=1.0)
    registry.update_udp_endpoint("w1", 1, UpdateUdpEndpoint("203.0.113.1", 4000), now=2.0)
    replaced = registry.connect("w1", 2, "10.0.0.2", 6000, now=3.0)
    assert replaced is not None and replaced.connection_id == 1
    assert registry.disconnect("w1", 1) is False  # the old connection's clean-up
    record = registry.get("w1")
    assert record is not None
    assert (record.connection_id, record.observed_ip, record.udp_endpoint) == (2, "10.0.0.2", None)
    with pytest.raises(LookupError):
        registry.update_udp_endpoint("w1", 1, UpdateUdpEndpoint("203.0.113.9", 9), now=4.0)
    assert registry.get("w1") is record and record.udp_endpoint is None


def test_endpoint_update_reports_change_and_counts() -> None:
    registry = Registry()
    registry.connect("w1", 1, None, None, now=0.0)
    first = registry.update_udp_endpoint(
        "w1", 1, UpdateUdpEndpoint("203.0.113.1", 4000, MappingBehaviour.ENDPOINT_INDEPENDENT), 1.0
    )
    same = registry.update_udp_endpoint(
        "w1", 1, UpdateUdpEndpoint("203.0.113.1", 4000, MappingBehaviour.ENDPOINT_INDEPENDENT), 2.0
    )
    moved = registry.update_udp_endpoint("w1", 1, UpdateUdpEndpoint("203.0.113.1", 4001), 3.0)
    assert first.changed and first.previous is None
    assert not same.changed
    assert moved.changed and moved.previous == UdpEndpoint(
        "203.0.113.1", 4000, MappingBehaviour.ENDPOINT_INDEPENDENT
    )
    record = registry.get("w1")
    assert record is not None
    assert (record.udp_update_count, record.udp_updated_at) == (3, 3.0)


def test_registered_ip_prefers_the_self_reported_one() -> None:
    registry = Registry()
    registry.connect("w1", 1, "169.254.1.1", 33000, now=0.0)
    record = registry.get("w1")
    assert record is not None and record.registered_ip == "169.254.1.1"
    registry.register_public_ip("w1", 1, "203.0.113.5")
    assert record.registered_ip == "203.0.113.5"


def test_pages_cover_every_worker_once_in_order_even_while_it_changes() -> None:
    registry = Registry()
    for n in range(10):
        registry.connect(f"w{n:02d}", n, None, None, now=0.0)
    seen: list[str] = []
    cursor = None
    while True:
        page = registry.page(limit=3, cursor=cursor)
        seen.extend(record.worker_id for record in page.records)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        registry.disconnect(cursor, int(cursor[1:]))  # removing the cursor itself is harmless
    assert seen == [f"w{n:02d}" for n in range(10)]
    assert registry.page().next_cursor is None
    assert registry.page(limit=100).next_cursor is None
    assert registry.page(cursor="zzz").records == []


def test_a_records_listed_times_follow_its_updates() -> None:
    registry = Registry()
    registry.connect("w1", 1, None, None, now=0.0)
    record = registry.get("w1")
    assert record is not None
    assert record.timestamps_iso() == ("1970-01-01T00:00:00.000+00:00", None)
    registry.update_udp_endpoint("w1", 1, UpdateUdpEndpoint("203.0.113.1", 4000), 1.25)
    assert record.timestamps_iso() == (
        "1970-01-01T00:00:00.000+00:00",
        "1970-01-01T00:00:01.250+00:00",
    )
    registry.update_udp_endpoint("w1", 1, UpdateUdpEndpoint("203.0.113.1", 4000), 2.5)
    assert record.timestamps_iso()[1] == "1970-01-01T00:00:02.500+00:00"
    # A newer connection's record starts from its own time.
    registry.connect("w1", 2, None, None, now=60.0)
    newer = registry.get("w1")
    assert newer is not None and newer.timestamps_iso() == ("1970-01-01T00:01:00.000+00:00", None)
