"""infra/terraform/log_queries.json: well formed, complete, and naming events the services log.

The full check, that every field a query or metric selects on appears in the services'
real log lines, belongs with the service tests; `Catalogue.required_fields()` gives it
the list. Here: a static guard that each event name is written in its service's source.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.conftest import REPO, SCRIPTS

CONTRACT_EVENTS = {
    "rendezvous": {
        "worker_connected",
        "worker_replaced",
        "public_ip_registered",
        "udp_endpoint_updated",
        "udp_endpoint_rejected",
        "message_rejected",
        "worker_disconnected",
        "server_started",
        "server_stopping",
        "auth_disabled",
        "connection_rejected",
        "connection_rate_limited",
        "peer_introduced",
        "introduction_rejected",
        "punch_result",
    },
    "worker": {
        "udp_socket_bound",
        "stun_request",
        "stun_result",
        "stun_failed",
        "mapping_classified",
        "endpoint_reported",
        "endpoint_ack",
        "rendezvous_connected",
        "rendezvous_disconnected",
        "reconnect_scheduled",
        "worker_shutdown",
        "rendezvous_refused",
        "worker_id_taken",
        "connect_requested",
        "peer_introduced",
        "punch_connected",
        "punch_failed",
        "relay_started",
        "relay_upgraded",
    },
}
CONTRACT_FIELDS = {
    "event",
    "worker_id",
    "reason",
    "udp_ip",
    "udp_port",
    "mapping",
    # connection_rejected and rendezvous_refused (close code); punch_result.
    "code",
    "status",
    "path",
}


@pytest.fixture(scope="module")
def catalogue() -> Iterator[Any]:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import holepunch_logs_queries

        yield holepunch_logs_queries.load_catalogue()
    finally:
        sys.path.remove(str(SCRIPTS))


def test_events_belong_to_their_service(catalogue: Any) -> None:
    for (service, event), _ in catalogue.required_fields().items():
        if event is not None:
            assert event in CONTRACT_EVENTS[service], f"{service} does not log {event}"


def test_every_event_has_a_saved_query(catalogue: Any) -> None:
    for service, events in CONTRACT_EVENTS.items():
        covered = {e for q in catalogue.queries.values() if q.service == service for e in q.events}
        assert covered == events, f"{service}: no saved query for {events - covered}"


def test_metrics_cover_registrations_updates_rejections_disconnects(catalogue: Any) -> None:
    metric_events = {e for q in catalogue.queries.values() if q.metric for e in q.events}
    assert {
        "worker_connected",
        "udp_endpoint_updated",
        "udp_endpoint_rejected",
        "message_rejected",
        "worker_disconnected",
        "connection_rate_limited",
        "peer_introduced",
        "introduction_rejected",
    } <= metric_events


def test_auth_punching_and_refusal_metrics_and_their_labels(catalogue: Any) -> None:
    by_metric = {q.metric: q for q in catalogue.queries.values() if q.metric}
    expected = {
        "connection_rejections": (
            "auth-rejections",
            "rendezvous",
            ("connection_rejected",),
            ("code",),
        ),
        "punch_results": ("punch-results", "rendezvous", ("punch_result",), ("status", "path")),
        "introductions": (
            "introductions",
            "rendezvous",
            ("peer_introduced", "introduction_rejected"),
            ("event",),
        ),
        "worker_refusals": ("refusals", "worker", ("rendezvous_refused",), ("code",)),
    }
    for metric, (name, service, events, labels) in expected.items():
        query = by_metric[metric]
        assert (query.name, query.service, query.events, query.labels) == (
            name,
            service,
            events,
            labels,
        )
    fields = catalogue.required_fields()
    assert fields[("rendezvous", "punch_result")] == {"event", "status", "path"}
    assert fields[("rendezvous", "connection_rejected")] == {"event", "code"}
    assert fields[("worker", "rendezvous_refused")] == {"event", "code"}


def test_selected_fields_are_contract_fields(catalogue: Any) -> None:
    for fields in catalogue.required_fields().values():
        assert fields <= CONTRACT_FIELDS, fields - CONTRACT_FIELDS
    assert catalogue.required_fields()[("worker", None)] == {"worker_id"}
    assert catalogue.required_fields()[("rendezvous", "udp_endpoint_rejected")] == {
        "event",
        "reason",
    }


def test_checklist_follows_the_design(catalogue: Any) -> None:
    required = {(item.service, item.event) for item in catalogue.checklist if item.required}
    assert required == {
        ("worker", "udp_socket_bound"),
        ("worker", "stun_request"),
        ("worker", "stun_result"),
        ("worker", "endpoint_reported"),
        ("worker", "endpoint_ack"),
        ("rendezvous", "worker_connected"),
        ("rendezvous", "udp_endpoint_updated"),
    }


def test_event_names_are_written_in_their_service_source(catalogue: Any) -> None:
    for service in ("rendezvous", "worker"):
        package = REPO / "services" / service / f"holepunch_{service}"
        source = "".join(p.read_text() for p in package.rglob("*.py"))
        missing = [
            event
            for (owner, event) in catalogue.required_fields()
            if owner == service and event is not None and f'"{event}"' not in source
        ]
        assert not missing, f"{service} never logs {missing}"


def test_filters_quote_values(catalogue: Any) -> None:
    text = catalogue.field_filter("worker", 'a"b\\c', {"worker": "w"})
    assert text.endswith('jsonPayload.worker_id="a\\"b\\\\c"')
