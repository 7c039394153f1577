"""The store boundary with no sockets and no Redis: what the handler's outcome asks the
store to publish, what it must look up first, and the in-memory store doing both."""

from __future__ import annotations

import pytest
from holepunch_protocol import (
    ConnectRequest,
    EchoRequest,
    GetMyDetails,
    MappingBehaviour,
    PathKind,
    PunchResult,
    PunchStatus,
    RegisterPublicIp,
    RelayDatagram,
    UpdateUdpEndpoint,
)
from holepunch_rendezvous.auth import WorkerOwnership
from holepunch_rendezvous.handler import (
    NO_LOOKUPS,
    Lookups,
    Outcome,
    decode_frame,
    handle_message,
    introduce,
    lookups_for,
)
from holepunch_rendezvous.punch_sessions import PunchSessionTable
from holepunch_rendezvous.registry import Registry, WorkerRecord
from holepunch_rendezvous.store import KEY_NAMESPACES, MemoryStore, RedisKeys


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def registry_of(*worker_ids: str) -> Registry:
    registry = Registry()
    for connection_id, worker_id in enumerate(worker_ids, start=1):
        registry.connect(worker_id, connection_id, "127.0.0.1", 1000 + connection_id, now=0.0)
        update = UpdateUdpEndpoint(
            "203.0.113.1", 4000 + connection_id, MappingBehaviour.ENDPOINT_INDEPENDENT
        )
        registry.update_udp_endpoint(worker_id, connection_id, update, now=0.0)
    return registry


def test_a_frame_is_decoded_once_into_a_message_or_its_refusal() -> None:
    assert decode_frame("w1", '{"type":"get_my_details"}') == GetMyDetails()
    refused = decode_frame("w1", "{")
    assert isinstance(refused, Outcome) and refused.event is not None
    assert refused.event.fields["code"] == "invalid_json"


def test_the_outcome_names_the_record_a_message_changed() -> None:
    registry = registry_of("w1")
    sessions = PunchSessionTable()
    for message in (
        UpdateUdpEndpoint("198.51.100.1", 5000, MappingBehaviour.ENDPOINT_INDEPENDENT),
        RegisterPublicIp("198.51.100.9"),
    ):
        outcome = handle_message(registry, sessions, "w1", 1, message, 1.0)
        assert outcome.changed_record is registry.get("w1")
        assert outcome.created_session is None
    for unchanged in (EchoRequest("x"), GetMyDetails()):
        assert handle_message(registry, sessions, "w1", 1, unchanged, 1.0).changed_record is None
    # A replaced connection changes nothing, so there is nothing to publish.
    registry.connect("w1", 7, "127.0.0.1", 2000, now=2.0)
    stale = handle_message(registry, sessions, "w1", 1, RegisterPublicIp("192.0.2.1"), 3.0)
    assert stale.changed_record is None


def test_the_outcome_carries_the_session_an_introduction_made() -> None:
    sessions = PunchSessionTable()
    outcome = introduce(registry_of("a", "b"), sessions, "a", "b", now=1.0)
    assert outcome.created_session is not None
    assert sessions.get(outcome.created_session.session_id) is outcome.created_session
    refused = introduce(registry_of("a"), sessions, "a", "b", now=1.0)
    assert refused.created_session is None and refused.deliveries == ()


def test_lookups_name_what_a_message_needs_from_beyond_this_process() -> None:
    registry = registry_of("w1")
    result = PunchResult("s1", "w2", PunchStatus.CONNECTED, PathKind.DIRECT, 1, 5.0)
    assert lookups_for(registry, "w1", 1, ConnectRequest("w2")) == Lookups(worker_ids=("w2",))
    assert lookups_for(registry, "w1", 1, RelayDatagram("s1", b"hi")) == Lookups(session_id="s1")
    assert lookups_for(registry, "w1", 1, result) == Lookups(session_id="s1")
    assert lookups_for(registry, "w1", 1, EchoRequest("x")) is NO_LOOKUPS
    # A connection that is no longer current is refused before any look-up.
    assert lookups_for(registry, "w1", 2, ConnectRequest("w2")) is NO_LOOKUPS


async def test_the_memory_store_keeps_ownership_and_finds_records_in_the_registry() -> None:
    clock = Clock()
    registry, ownership = registry_of("w1"), WorkerOwnership(ttl=10.0)
    store = MemoryStore(registry, ownership, clock)
    assert store.describe() == {"backend": "memory"} and store.ready

    assert (await store.connect(WorkerRecord("w2", 5, None, None, 0.0), "alice")).accepted
    assert not (await store.connect(WorkerRecord("w2", 6, None, None, 0.0), "bob")).accepted
    clock.now += 9.0
    await store.disconnected("w2", "alice", removed=True)  # renews alice's binding
    clock.now += 9.0
    assert ownership.owner("w2", clock.now) == "alice"

    sessions = PunchSessionTable()
    assert await store.prepare(Lookups(worker_ids=("w1",), session_id="s"), sessions) is registry
    assert len(sessions) == 0
    assert not await store.route("w1", "{}")
    page = await store.page(limit=None, cursor=None)
    assert (page.count, [r.worker_id for r in page.records]) == (1, ["w1"])


def test_redis_key_names_come_from_one_table_for_python_and_lua() -> None:
    keys = RedisKeys("hp:")
    assert keys.worker("w1") == "hp:w:w1" and keys.ids == "hp:ids"
    assert keys.session("s1") == "hp:s:s1" and keys.worker_sessions("w1") == "hp:ws:w1"
    assert keys.channel("inst") == "hp:ch:inst" and keys.instances == "hp:instances"
    prelude = keys.lua_prelude()
    for name, suffix in KEY_NAMESPACES.items():
        assert f"{name} = 'hp:{suffix}'" in prelude
    with pytest.raises(ValueError, match="prefix"):
        RedisKeys("x']..redis.call('FLUSHALL')..['")
