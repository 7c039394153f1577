"""The endpoint-reporting state machine, driven with plain values and a fake clock."""

from __future__ import annotations

from holepunch_protocol import AckStatus, MappingBehaviour, UdpEndpointAck, UpdateUdpEndpoint
from holepunch_worker.signalling import (
    EndpointReporter,
    ReconnectNeeded,
    ReportState,
    SendReport,
)

A = UpdateUdpEndpoint("203.0.113.7", 40000, MappingBehaviour.ENDPOINT_INDEPENDENT, 5000)
B = UpdateUdpEndpoint("203.0.113.7", 40001, MappingBehaviour.ENDPOINT_INDEPENDENT, 5000)
OK = UdpEndpointAck(AckStatus.SUCCESS)
REFUSED = UdpEndpointAck(AckStatus.ERROR, "no")


def connected_reporter(timeout: float = 10.0) -> EndpointReporter:
    reporter = EndpointReporter(ack_timeout=timeout)
    assert reporter.connection_opened(now=0.0) is None
    return reporter


def test_nothing_is_sent_before_an_endpoint_is_known() -> None:
    reporter = connected_reporter()
    assert reporter.state is ReportState.NO_ENDPOINT
    assert reporter.deadline is None
    assert reporter.timer_expired(now=100.0) is None


def test_an_endpoint_found_while_disconnected_is_sent_on_connect() -> None:
    reporter = EndpointReporter(ack_timeout=10.0)
    assert reporter.endpoint_discovered(A, now=0.0) is None
    assert reporter.state is ReportState.DISCONNECTED
    assert reporter.connection_opened(now=1.0) == SendReport(A)
    assert reporter.state is ReportState.AWAITING_ACK
    assert reporter.deadline == 11.0


def test_ack_settles_the_report_and_an_unchanged_endpoint_is_not_resent() -> None:
    reporter = connected_reporter()
    assert reporter.endpoint_discovered(A, now=1.0) == SendReport(A)
    outcome = reporter.ack_received(OK)
    assert outcome.report == A and outcome.accepted
    assert reporter.state is ReportState.ACKNOWLEDGED
    assert reporter.acknowledged_endpoint == A
    assert reporter.deadline is None
    assert reporter.endpoint_discovered(A, now=21.0) is None  # STUN refresh, same mapping


def test_a_changed_endpoint_is_reported() -> None:
    reporter = connected_reporter()
    reporter.endpoint_discovered(A, now=1.0)
    reporter.ack_received(OK)
    assert reporter.endpoint_discovered(B, now=21.0) == SendReport(B)
    assert reporter.ack_received(OK).report == B
    assert reporter.acknowledged_endpoint == B


def test_missing_ack_is_resent_after_the_timeout_then_reconnect_is_asked() -> None:
    reporter = connected_reporter(timeout=5.0)
    reporter.endpoint_discovered(A, now=0.0)
    assert reporter.timer_expired(now=4.9) is None  # too early: nothing
    assert reporter.timer_expired(now=5.0) == SendReport(A, resend=True)
    assert reporter.deadline == 10.0
    assert reporter.timer_expired(now=10.0) == SendReport(A, resend=True)
    action = reporter.timer_expired(now=15.0)
    assert isinstance(action, ReconnectNeeded)
    assert "3 reports" in action.reason


def test_a_late_ack_stops_the_resends() -> None:
    reporter = connected_reporter(timeout=5.0)
    reporter.endpoint_discovered(A, now=0.0)
    reporter.timer_expired(now=5.0)  # re-sent: two copies in flight
    assert reporter.ack_received(OK).report == A
    assert reporter.deadline is None
    assert reporter.ack_received(OK).report == A  # the duplicate's ack
    assert reporter.ack_received(OK).report is None  # nothing left: unsolicited


def test_acks_are_matched_in_order_when_the_mapping_changes_in_flight() -> None:
    reporter = connected_reporter()
    reporter.endpoint_discovered(A, now=0.0)
    assert reporter.endpoint_discovered(B, now=1.0) == SendReport(B)
    assert reporter.ack_received(OK).report == A
    assert reporter.state is ReportState.AWAITING_ACK  # B still on its way
    assert reporter.ack_received(OK).report == B
    assert reporter.state is ReportState.ACKNOWLEDGED


def test_flapping_back_to_the_acknowledged_endpoint_is_reported_again() -> None:
    reporter = connected_reporter()
    reporter.endpoint_discovered(A, now=0.0)
    reporter.ack_received(OK)
    reporter.endpoint_discovered(B, now=1.0)
    # B is in flight, so the rendezvous will hold B: A must be sent again.
    assert reporter.endpoint_discovered(A, now=2.0) == SendReport(A)
    reporter.ack_received(OK)
    reporter.ack_received(OK)
    assert reporter.acknowledged_endpoint == A


def test_a_rejected_endpoint_is_not_resent_on_a_timer_but_on_the_next_discovery() -> None:
    reporter = connected_reporter(timeout=5.0)
    reporter.endpoint_discovered(A, now=0.0)
    outcome = reporter.ack_received(REFUSED)
    assert outcome.report == A and not outcome.accepted
    assert reporter.state is ReportState.REJECTED
    assert reporter.deadline is None
    assert reporter.timer_expired(now=100.0) is None
    assert reporter.endpoint_discovered(A, now=120.0) == SendReport(A)
    assert reporter.state is ReportState.AWAITING_ACK
    assert reporter.deadline == 125.0


def test_every_new_connection_reports_again() -> None:
    reporter = connected_reporter()
    reporter.endpoint_discovered(A, now=0.0)
    reporter.ack_received(OK)
    reporter.connection_closed()
    assert reporter.state is ReportState.DISCONNECTED
    assert reporter.acknowledged_endpoint is None
    assert reporter.endpoint_discovered(B, now=5.0) is None  # not connected: remembered
    assert reporter.connection_opened(now=6.0) == SendReport(B)
    # An ack from the old connection cannot arrive here; a fresh one settles B.
    assert reporter.ack_received(OK).report == B


def test_closing_forgets_reports_in_flight() -> None:
    reporter = connected_reporter(timeout=5.0)
    reporter.endpoint_discovered(A, now=0.0)
    reporter.connection_closed()
    assert reporter.deadline is None
    assert reporter.timer_expired(now=50.0) is None
    assert reporter.connection_opened(now=60.0) == SendReport(A)
    assert reporter.deadline == 65.0
