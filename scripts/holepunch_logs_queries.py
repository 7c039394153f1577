"""holepunch's saved Cloud Logging queries, read from infra/terraform/log_queries.json.

That JSON file is the one list of the log events and jsonPayload fields our saved
queries, log-based metrics and deployment checklist select on. Terraform builds the
log-based metrics from it (infra/terraform/observability.tf); `scripts/logs` and
`scripts/verify` build their queries from it through this module, with the same filter
text as the metrics; `required_fields()` lists what the services must emit, for a test
that reads their real log lines. The worker's entries sit under the resource type of
its host: a Cloud Run service's revisions, or a worker pool (`worker_host`).

Standard library only: the scripts run with any python3.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CATALOGUE_PATH",
    "WORKER_HOSTS",
    "Catalogue",
    "ChecklistItem",
    "FieldQuery",
    "Query",
    "Resource",
    "load_catalogue",
    "quote",
]

CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "infra" / "terraform" / "log_queries.json"


# What may run the workers (Terraform's worker_host); the rendezvous is always a service.
WORKER_HOSTS = ("worker_pool", "service")


def quote(value: str) -> str:
    """A Cloud Logging query string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Query:
    """A saved query: some events of one service; `metric` names its log-based metric."""

    name: str
    service: str
    events: tuple[str, ...]
    description: str
    metric: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class FieldQuery:
    """A saved query with a parameter: every event whose `field` equals a value."""

    name: str
    field: str
    services: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class ChecklistItem:
    """One log line the deployment checklist (scripts/verify) expects to find."""

    id: str
    text: str
    service: str
    event: str
    required: bool


@dataclass(frozen=True)
class Resource:
    """Where a Cloud Run resource's entries are: the monitored resource type and the label
    that holds its name."""

    type: str
    name_label: str


@dataclass(frozen=True)
class Catalogue:
    services: tuple[str, ...]
    queries: Mapping[str, Query]
    field_queries: Mapping[str, FieldQuery]
    checklist: tuple[ChecklistItem, ...]
    # By host kind: each of WORKER_HOSTS.
    resource_types: Mapping[str, Resource]

    def _service(self, service: str, service_names: Mapping[str, str]) -> str:
        return service_names.get(service, service)

    def resource(self, service: str, worker_host: str = "service") -> Resource:
        """The resource a service's entries are under: the worker's follows its host."""
        if worker_host not in WORKER_HOSTS:
            raise ValueError(f"worker_host must be one of {WORKER_HOSTS}, not {worker_host!r}")
        return self.resource_types[worker_host if service == "worker" else "service"]

    def _base(self, resource: Resource, names: list[str]) -> str:
        quoted = [quote(name) for name in names]
        selected = quoted[0] if len(quoted) == 1 else "(" + " OR ".join(quoted) + ")"
        label = f"resource.labels.{resource.name_label}"
        return f"resource.type={quote(resource.type)} AND {label}={selected}"

    def events_filter(
        self,
        service: str,
        events: tuple[str, ...],
        service_names: Mapping[str, str] | None = None,
        worker_host: str = "service",
    ) -> str:
        """The filter Terraform writes for a log-based metric, character for character."""
        name = self._service(service, service_names or {})
        if len(events) == 1:
            event = f"jsonPayload.event={quote(events[0])}"
        else:
            event = "jsonPayload.event=(" + " OR ".join(quote(e) for e in events) + ")"
        return f"{self._base(self.resource(service, worker_host), [name])} AND {event}"

    def query_filter(
        self,
        name: str,
        service_names: Mapping[str, str] | None = None,
        worker_host: str = "service",
    ) -> str:
        query = self.queries[name]
        return self.events_filter(query.service, query.events, service_names, worker_host)

    def field_filter(
        self,
        name: str,
        value: str,
        service_names: Mapping[str, str] | None = None,
        worker_host: str = "service",
    ) -> str:
        """Every entry of the query's services whose field equals value. Services under one
        resource type share one clause; under several (a worker pool beside the rendezvous
        service), one parenthesised clause each, joined by OR."""
        query = self.field_queries[name]
        by_resource: dict[Resource, list[str]] = {}
        for service in query.services:
            resource = self.resource(service, worker_host)
            by_resource.setdefault(resource, []).append(self._service(service, service_names or {}))
        clauses = [self._base(resource, names) for resource, names in by_resource.items()]
        selected = (
            clauses[0] if len(clauses) == 1 else "(" + " OR ".join(f"({c})" for c in clauses) + ")"
        )
        return f"{selected} AND jsonPayload.{query.field}={quote(value)}"

    def required_fields(self) -> dict[tuple[str, str | None], frozenset[str]]:
        """What the services must emit for every query, metric and checklist item to work.

        Keys are (service, event): that event must carry those jsonPayload fields.
        A key (service, None) means: some event of that service carries those fields
        (the field queries, e.g. `logs worker <id>` selects on worker_id).
        """
        needed: dict[tuple[str, str | None], set[str]] = {}
        for query in self.queries.values():
            for event in query.events:
                needed.setdefault((query.service, event), {"event"}).update(query.labels)
        for item in self.checklist:
            needed.setdefault((item.service, item.event), {"event"})
        for field_query in self.field_queries.values():
            for service in field_query.services:
                needed.setdefault((service, None), set()).add(field_query.field)
        return {key: frozenset(fields) for key, fields in needed.items()}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    """Read and check the catalogue; ValueError names what is wrong."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    services = _strings(raw["services"], "services")
    queries: dict[str, Query] = {}
    for name, q in raw["queries"].items():
        if q["service"] not in services:
            raise ValueError(f"query {name}: unknown service {q['service']!r}")
        metric = q.get("metric")
        queries[name] = Query(
            name=name,
            service=q["service"],
            events=_strings(q["events"], f"query {name}: events"),
            description=q["description"],
            metric=metric["name"] if metric else None,
            labels=tuple(metric["labels"]) if metric else (),
        )
    field_queries = {
        name: FieldQuery(
            name=name,
            field=f["field"],
            services=_strings(f["services"], f"field query {name}: services"),
            description=f["description"],
        )
        for name, f in raw["field_queries"].items()
    }
    clashes = set(queries) & set(field_queries)
    if clashes:
        raise ValueError(f"names used twice: {sorted(clashes)}")
    checklist = tuple(
        ChecklistItem(
            id=c["id"],
            text=c["text"],
            service=c["service"],
            event=c["event"],
            required=bool(c["required"]),
        )
        for c in raw["checklist"]
    )
    for item in checklist:
        if item.service not in services:
            raise ValueError(f"checklist {item.id}: unknown service {item.service!r}")
    resource_types = {
        kind: Resource(type=r["type"], name_label=r["name_label"])
        for kind, r in raw["resource_types"].items()
    }
    if set(resource_types) != set(WORKER_HOSTS):
        raise ValueError(f"resource_types must describe exactly {WORKER_HOSTS}")
    return Catalogue(
        resource_types=resource_types,
        services=services,
        queries=queries,
        field_queries=field_queries,
        checklist=checklist,
    )
