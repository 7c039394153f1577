"""The worker registry: pure state, no I/O.

Each worker_id maps to the record of its *current* WebSocket connection, named by an
opaque connection id. A newer connection replaces an older one, and only the current
connection may change or remove the record: the old connection's clean-up, which runs
later, can never remove the newer entry.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from holepunch_protocol import MappingBehaviour, UpdateUdpEndpoint, iso_timestamp

__all__ = ["EndpointUpdate", "Page", "Registry", "UdpEndpoint", "WorkerRecord"]


@dataclass(frozen=True, slots=True)
class UdpEndpoint:
    ip: str
    port: int
    mapping: MappingBehaviour | None = None
    local_port: int | None = None


@dataclass(slots=True)
class WorkerRecord:
    worker_id: str
    connection_id: int
    observed_ip: str | None
    observed_port: int | None
    connected_at: float
    reported_public_ip: str | None = None
    udp_endpoint: UdpEndpoint | None = None
    udp_updated_at: float | None = None
    udp_update_count: int = 0
    # Declared at registration, for the introduction policy (holepunch_rendezvous.policy).
    tags: tuple[str, ...] = ()
    # The proven public key (base64url); None for a keyless worker of the original design.
    public_key: str | None = None
    # The listing's ISO 8601 text of (connected_at, udp_updated_at), kept with the record
    # so a record listed again is not formatted again; it goes when the record goes.
    timestamps_text: tuple[float, float | None, str, str | None] | None = field(
        default=None, repr=False, compare=False
    )

    def timestamps_iso(self) -> tuple[str, str | None]:
        """`connected_at` and `udp_updated_at` as ISO 8601 text (formatted once per value)."""
        cached = self.timestamps_text
        if cached is None or cached[0] != self.connected_at or cached[1] != self.udp_updated_at:
            cached = (
                self.connected_at,
                self.udp_updated_at,
                iso_timestamp(self.connected_at),
                iso_timestamp(self.udp_updated_at),
            )
            self.timestamps_text = cached
        return cached[2], cached[3]

    @property
    def registered_ip(self) -> str | None:
        """The original design's `registered_ip`: self-reported if given, else observed."""
        return self.reported_public_ip or self.observed_ip


@dataclass(frozen=True, slots=True)
class EndpointUpdate:
    record: WorkerRecord
    previous: UdpEndpoint | None
    current: UdpEndpoint

    @property
    def changed(self) -> bool:
        return self.previous != self.current


@dataclass(frozen=True, slots=True)
class Page:
    """Some records in worker_id order; `count`: how many workers there are in all."""

    count: int
    records: list[WorkerRecord]
    next_cursor: str | None


@dataclass(slots=True)
class Registry:
    _records: dict[str, WorkerRecord] = field(default_factory=dict)
    # Sorted worker ids for stable, resumable pagination.
    _sorted_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[WorkerRecord]:
        return iter(self._records.values())

    def get(self, worker_id: str) -> WorkerRecord | None:
        return self._records.get(worker_id)

    def is_current(self, worker_id: str, connection_id: int) -> bool:
        record = self._records.get(worker_id)
        return record is not None and record.connection_id == connection_id

    def connect(
        self,
        worker_id: str,
        connection_id: int,
        observed_ip: str | None,
        observed_port: int | None,
        now: float,
    ) -> WorkerRecord | None:
        """Make `connection_id` the worker's current connection; return the replaced record."""
        return self.add(WorkerRecord(worker_id, connection_id, observed_ip, observed_port, now))

    def add(self, record: WorkerRecord) -> WorkerRecord | None:
        """Make `record` its worker's current one; return the record it replaced."""
        previous = self._records.get(record.worker_id)
        if previous is None:
            bisect.insort(self._sorted_ids, record.worker_id)
        self._records[record.worker_id] = record
        return previous

    def disconnect(self, worker_id: str, connection_id: int) -> bool:
        """Remove the worker if `connection_id` is still its current connection."""
        if not self.is_current(worker_id, connection_id):
            return False
        del self._records[worker_id]
        index = bisect.bisect_left(self._sorted_ids, worker_id)
        del self._sorted_ids[index]
        return True

    def _current(self, worker_id: str, connection_id: int) -> WorkerRecord:
        record = self._records.get(worker_id)
        if record is None or record.connection_id != connection_id:
            raise LookupError(f"connection {connection_id} no longer owns worker {worker_id!r}")
        return record

    def register_public_ip(self, worker_id: str, connection_id: int, ip: str) -> WorkerRecord:
        """Note the IP the worker reports as its public one; return its (changed) record."""
        record = self._current(worker_id, connection_id)
        record.reported_public_ip = ip
        return record

    def update_udp_endpoint(
        self, worker_id: str, connection_id: int, update: UpdateUdpEndpoint, now: float
    ) -> EndpointUpdate:
        record = self._current(worker_id, connection_id)
        endpoint = UdpEndpoint(update.udp_ip, update.udp_port, update.mapping, update.local_port)
        previous = record.udp_endpoint
        record.udp_endpoint = endpoint
        record.udp_updated_at = now
        record.udp_update_count += 1
        return EndpointUpdate(record=record, previous=previous, current=endpoint)

    def page(self, limit: int | None = None, cursor: str | None = None) -> Page:
        """Records ordered by worker_id, starting after `cursor`, at most `limit` of them."""
        start = 0 if cursor is None else bisect.bisect_right(self._sorted_ids, cursor)
        stop = len(self._sorted_ids) if limit is None else min(start + limit, len(self._sorted_ids))
        ids = self._sorted_ids[start:stop]
        next_cursor = ids[-1] if ids and stop < len(self._sorted_ids) else None
        records = [self._records[i] for i in ids]
        return Page(count=len(self._records), records=records, next_cursor=next_cursor)
