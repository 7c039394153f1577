"""What the fleet page is told: one `FleetChange` per thing that happened. Pure.

Changes are made from what the rendezvous already decided (a record it registered or
removed, an `Outcome` the handler returned), batched, and sent to every instance's
viewers as JSON; `decode_batch` reads a batch back and drops anything malformed, so a
bad message on the shared channel costs the page one change, never the feed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import orjson
from holepunch_logging import RendezvousEvent

from holepunch_rendezvous.handler import Outcome
from holepunch_rendezvous.registry import WorkerRecord
from holepunch_rendezvous.ui.fleet import mapping_kind

__all__ = [
    "ChangeKind",
    "FleetChange",
    "changes_of",
    "decode_batch",
    "encode_batch",
    "worker_joined",
    "worker_left",
]


class ChangeKind(enum.StrEnum):
    WORKER_JOINED = "worker_joined"
    WORKER_LEFT = "worker_left"
    ENDPOINT_UPDATED = "endpoint_updated"
    INTRODUCED = "introduced"
    PUNCH_RESULT = "punch_result"


# Fields each kind must carry as strings (the rest are optional and passed through).
REQUIRED_TEXT: dict[ChangeKind, tuple[str, ...]] = {
    ChangeKind.WORKER_JOINED: ("worker_id",),
    ChangeKind.WORKER_LEFT: ("worker_id",),
    ChangeKind.ENDPOINT_UPDATED: ("worker_id",),
    ChangeKind.INTRODUCED: ("session_id", "worker_id", "peer_id"),
    ChangeKind.PUNCH_RESULT: ("session_id", "worker_id", "peer_id", "status", "path"),
}


@dataclass(frozen=True, slots=True)
class FleetChange:
    kind: ChangeKind
    at: float
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def worker_id(self) -> str:
        return str(self.fields["worker_id"])

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "at": self.at, **self.fields}


def worker_joined(record: WorkerRecord, now: float) -> FleetChange:
    # Small on purpose: a change is built for every registration; the page reads the row.
    return FleetChange(
        ChangeKind.WORKER_JOINED, now, {"worker_id": record.worker_id, "tags": list(record.tags)}
    )


def worker_left(worker_id: str, now: float) -> FleetChange:
    return FleetChange(ChangeKind.WORKER_LEFT, now, {"worker_id": worker_id})


def changes_of(outcome: Outcome, now: float) -> list[FleetChange]:
    """The changes a handled message made: an endpoint update, an introduction, a punch
    result. The event's fields are what was decided, as logged."""
    event = outcome.event
    if event is None:
        return []
    fields = event.fields
    if event.name is RendezvousEvent.UDP_ENDPOINT_UPDATED and outcome.changed_record is not None:
        previous = fields.get("previous_udp_ip")
        return [
            FleetChange(
                ChangeKind.ENDPOINT_UPDATED,
                now,
                {
                    "worker_id": outcome.changed_record.worker_id,
                    "endpoint": f"{fields['udp_ip']}:{fields['udp_port']}",
                    "mapping": mapping_kind(outcome.changed_record),
                    "moved": bool(fields.get("changed")) and previous is not None,
                    "previous": None
                    if previous is None
                    else f"{previous}:{fields.get('previous_udp_port')}",
                },
            )
        ]
    if event.name is RendezvousEvent.PEER_INTRODUCED and outcome.created_session is not None:
        session = outcome.created_session
        return [
            FleetChange(
                ChangeKind.INTRODUCED,
                now,
                {
                    "session_id": session.session_id,
                    "worker_id": session.initiator,
                    "peer_id": session.responder,
                    "relay_first": session.relay_first,
                },
            )
        ]
    if event.name is RendezvousEvent.PUNCH_RESULT:
        keep = ("session_id", "worker_id", "peer_id", "status", "path", "attempts")
        extra = ("elapsed_ms", "rtt_ms", "reason")
        result = {name: fields[name] for name in keep}
        result.update({name: fields[name] for name in extra if fields.get(name) is not None})
        return [FleetChange(ChangeKind.PUNCH_RESULT, now, result)]
    return []


def encode_batch(changes: list[FleetChange]) -> bytes:
    return orjson.dumps({"changes": [change.to_json() for change in changes]})


def decode_batch(payload: str | bytes) -> tuple[list[FleetChange], int]:
    """The changes in a batch, and how many entries were unreadable (dropped)."""
    try:
        body = orjson.loads(payload)
        entries = body["changes"]
    except (ValueError, KeyError, TypeError):
        return [], 1
    if not isinstance(entries, list):
        return [], 1
    changes: list[FleetChange] = []
    dropped = 0
    for entry in entries:
        change = _decode_change(entry)
        if change is None:
            dropped += 1
        else:
            changes.append(change)
    return changes, dropped


KIND_BY_NAME = {kind.value: kind for kind in ChangeKind}


def _decode_change(entry: object) -> FleetChange | None:
    if not isinstance(entry, dict):
        return None
    kind = KIND_BY_NAME.get(entry.pop("kind", None))  # the entry is fresh from the JSON
    at = entry.pop("at", None)
    if kind is None or type(at) not in (int, float):
        return None
    for name in REQUIRED_TEXT[kind]:
        if type(entry.get(name)) is not str:
            return None
    return FleetChange(kind, float(at), entry)
