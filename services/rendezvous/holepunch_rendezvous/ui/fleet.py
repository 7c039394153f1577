"""The fleet table: one row per worker, filtered and paged on the server. Pure.

With 5,000 workers the browser gets one page of rows (and the counts its filters need),
never the whole registry: filtering runs here over the records, and only the rows shown
are formatted.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from holepunch_rendezvous.identity import VerifiedKey
from holepunch_rendezvous.registry import WorkerRecord

__all__ = [
    "NO_ENDPOINT",
    "FleetCache",
    "FleetQuery",
    "QueryError",
    "fleet_row",
    "mapping_kind",
    "select",
]

# The mapping kind of a worker that has reported no endpoint yet.
NO_ENDPOINT = "no_endpoint"
MAPPING_KINDS = ("endpoint_independent", "endpoint_dependent", "unknown", NO_ENDPOINT)
MAX_PAGE = 500
DEFAULT_PAGE = 100
MAX_SEARCH = 200
NUMBER = re.compile(r"[0-9]{1,7}")


class QueryError(ValueError):
    """A query parameter the table cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class FleetQuery:
    text: str = ""  # a substring of the id, a tag, the endpoint or the key fingerprint
    mapping: str | None = None
    tag: str | None = None
    offset: int = 0
    limit: int = DEFAULT_PAGE

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> FleetQuery:
        text = params.get("q", "").strip().lower()
        if len(text) > MAX_SEARCH:
            raise QueryError(f"q: at most {MAX_SEARCH} characters")
        mapping = params.get("mapping") or None
        if mapping is not None and mapping not in MAPPING_KINDS:
            raise QueryError(f"mapping: one of {', '.join(MAPPING_KINDS)}")
        return cls(
            text=text,
            mapping=mapping,
            tag=params.get("tag") or None,
            offset=_number(params, "offset", 0, 10_000_000),
            limit=_number(params, "limit", DEFAULT_PAGE, MAX_PAGE, minimum=1),
        )


def _number(
    params: Mapping[str, str], name: str, default: int, maximum: int, minimum: int = 0
) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not NUMBER.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise QueryError(f"{name}: an integer in {minimum}..{maximum}")
    return int(raw)


def fingerprint_of(record: WorkerRecord) -> str | None:
    return None if record.public_key is None else VerifiedKey(record.public_key).fingerprint


def mapping_kind(record: WorkerRecord) -> str:
    endpoint = record.udp_endpoint
    if endpoint is None:
        return NO_ENDPOINT
    return endpoint.mapping.value if endpoint.mapping is not None else "unknown"


def fleet_row(record: WorkerRecord) -> dict[str, Any]:
    endpoint = record.udp_endpoint
    connected_since, endpoint_updated_at = record.timestamps_iso()
    return {
        "worker_id": record.worker_id,
        "tags": list(record.tags),
        "mapping": mapping_kind(record),
        "endpoint": None if endpoint is None else f"{endpoint.ip}:{endpoint.port}",
        "key_fingerprint": fingerprint_of(record),
        "keyless": record.public_key is None,
        "connected_since": connected_since,
        "endpoint_updated_at": endpoint_updated_at,
        "endpoint_updates": record.udp_update_count,
    }


def _text_matches(record: WorkerRecord, text: str) -> bool:
    if text in record.worker_id.lower() or any(text in tag for tag in record.tags):
        return True
    endpoint = record.udp_endpoint
    if endpoint is not None and text in f"{endpoint.ip}:{endpoint.port}":
        return True
    fingerprint = fingerprint_of(record)
    return fingerprint is not None and fingerprint.startswith(text)


def select(records: Iterable[WorkerRecord], query: FleetQuery) -> dict[str, Any]:
    """One page of the table (records in worker_id order), with the counts of every
    mapping kind and tag in the whole fleet for the filters."""
    total = 0
    mappings = dict.fromkeys(MAPPING_KINDS, 0)
    tags: collections.Counter[str] = collections.Counter()
    matched: list[WorkerRecord] = []
    for record in records:
        total += 1
        kind = mapping_kind(record)
        mappings[kind] += 1
        if record.tags:
            tags.update(record.tags)
        if query.mapping is not None and kind != query.mapping:
            continue
        if query.tag is not None and query.tag not in record.tags:
            continue
        if query.text and not _text_matches(record, query.text):
            continue
        matched.append(record)
    shown = matched[query.offset : query.offset + query.limit]
    return {
        "total": total,
        "matched": len(matched),
        "offset": query.offset,
        "limit": query.limit,
        "rows": [fleet_row(record) for record in shown],
        "mappings": mappings,
        "tags": dict(sorted(tags.items())),
    }


class FleetCache:
    """The bodies last served, by query, for one version of the fleet (the feed's count
    of changes): under churn, viewers looking at the same page cost one selection per
    batch of changes between them, not one each."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._bodies: collections.OrderedDict[FleetQuery, tuple[int, bytes]] = (
            collections.OrderedDict()
        )

    def get(self, query: FleetQuery, version: int) -> bytes | None:
        cached = self._bodies.get(query)
        if cached is None or cached[0] != version:
            return None
        self._bodies.move_to_end(query)
        return cached[1]

    def put(self, query: FleetQuery, version: int, body: bytes) -> None:
        self._bodies[query] = (version, body)
        self._bodies.move_to_end(query)
        while len(self._bodies) > self._size:
            self._bodies.popitem(last=False)
