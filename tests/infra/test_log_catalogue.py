"""infra/terraform/log_queries.json: well formed, complete, and naming events the services log.

The events it may name are the members of the services' enums in
holepunch_logging.events (tests/unit/test_log_events.py checks that each member is
logged by its service). The full check, that every field a query or metric selects on
appears in the services' real log lines, belongs with the service tests;
`Catalogue.required_fields()` gives it the list.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from holepunch_logging import EVENTS_BY_SERVICE, RendezvousEvent, WorkerEvent

from tests.infra.conftest import SCRIPTS

# The events operators query: each has a saved query (the others are for debugging).
CONTRACT_EVENTS: dict[str, set[RendezvousEvent] | set[WorkerEvent]] = {
    "rendezvous": {
        RendezvousEvent.WORKER_CONNECTED,
        RendezvousEvent.WORKER_REPLACED,
        RendezvousEvent.PUBLIC_IP_REGISTERED,
        RendezvousEvent.UDP_ENDPOINT_UPDATED,
        RendezvousEvent.UDP_ENDPOINT_REJECTED,
        RendezvousEvent.MESSAGE_REJECTED,
        RendezvousEvent.WORKER_DISCONNECTED,
        RendezvousEvent.SERVER_STARTED,
        RendezvousEvent.SERVER_STOPPING,
        RendezvousEvent.AUTH_DISABLED,
        RendezvousEvent.CONNECTION_REJECTED,
        RendezvousEvent.CONNECTION_RATE_LIMITED,
        RendezvousEvent.PEER_INTRODUCED,
        RendezvousEvent.INTRODUCTION_REJECTED,
        RendezvousEvent.PUNCH_RESULT,
    },
    "worker": {
        WorkerEvent.UDP_SOCKET_BOUND,
        WorkerEvent.STUN_REQUEST,
        WorkerEvent.STUN_RESULT,
        WorkerEvent.STUN_FAILED,
        WorkerEvent.MAPPING_CLASSIFIED,
        WorkerEvent.ENDPOINT_REPORTED,
        WorkerEvent.ENDPOINT_ACK,
        WorkerEvent.RENDEZVOUS_CONNECTED,
        WorkerEvent.RENDEZVOUS_DISCONNECTED,
        WorkerEvent.RECONNECT_SCHEDULED,
        WorkerEvent.WORKER_SHUTDOWN,
        WorkerEvent.RENDEZVOUS_REFUSED,
        WorkerEvent.WORKER_ID_TAKEN,
        WorkerEvent.CONNECT_REQUESTED,
        WorkerEvent.PEER_INTRODUCED,
        WorkerEvent.PUNCH_CONNECTED,
        WorkerEvent.PUNCH_FAILED,
        WorkerEvent.RELAY_STARTED,
        WorkerEvent.RELAY_UPGRADED,
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


def test_the_catalogue_names_only_events_of_the_enums(catalogue: Any) -> None:
    assert set(catalogue.services) == set(EVENTS_BY_SERVICE)
    for (service, event), _ in catalogue.required_fields().items():
        if event is not None:
            known = {member.value for member in EVENTS_BY_SERVICE[service]}
            assert event in known, f"{event} is not a {EVENTS_BY_SERVICE[service].__name__}"


def test_events_belong_to_their_service(catalogue: Any) -> None:
    for (service, event), _ in catalogue.required_fields().items():
        if event is not None:
            assert event in CONTRACT_EVENTS[service], f"{service}: {event} has no saved query"


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


def test_filters_quote_values(catalogue: Any) -> None:
    text = catalogue.field_filter("worker", 'a"b\\c', {"worker": "w"})
    assert text.endswith('jsonPayload.worker_id="a\\"b\\\\c"')
