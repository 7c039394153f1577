"""The slow-client counter and its bounded logging, on a virtual clock."""

from __future__ import annotations

import logging

import pytest
from holepunch_logging import RendezvousEvent
from holepunch_rendezvous.slow_clients import SlowClientKind, SlowClients


def test_every_slow_client_is_counted_but_logged_at_a_bounded_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    slow = SlowClients(log_interval_sec=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "holepunch.rendezvous"):
        for _ in range(50):
            slow.record(SlowClientKind.HANDSHAKE, "198.51.100.7", 10.0)
        slow.record(SlowClientKind.FIRST_MESSAGE, "198.51.100.8", 10.0)
        now[0] = 10.0
        slow.record(SlowClientKind.HANDSHAKE, "198.51.100.7", 10.0)
    assert slow.describe() == {"handshake_timeouts": 51, "first_message_timeouts": 1}
    logged = [record.__dict__["json_fields"] for record in caplog.records]
    assert [(f["event"], f["kind"], f["unlogged"]) for f in logged] == [
        (RendezvousEvent.SLOW_CLIENT_CLOSED, "handshake", 0),
        (RendezvousEvent.SLOW_CLIENT_CLOSED, "first_message", 0),
        (RendezvousEvent.SLOW_CLIENT_CLOSED, "handshake", 49),
    ]
    assert logged[-1]["closed_total"] == 51
