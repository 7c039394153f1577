"""RedisStore itself against a real redis-server: round trips, records, outage replay."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio
from holepunch_protocol import MappingBehaviour, UpdateUdpEndpoint
from holepunch_rendezvous.auth import WorkerOwnership
from holepunch_rendezvous.config import ConfigError, RendezvousConfig
from holepunch_rendezvous.punch_sessions import PunchSessionTable
from holepunch_rendezvous.registry import Registry, UdpEndpoint, WorkerRecord
from holepunch_rendezvous.store import (
    DEFAULT_KEY_PREFIX,
    MemoryStore,
    RedisKeys,
    RedisStore,
    StoreEvents,
    build_store,
    decode_record,
    encode_record,
)

from tests.support.redis_server import RedisServer, redis_server
from tests.support.rendezvous import eventually

__all__ = ["redis_server"]  # the fixture, imported to be used here

KEYS = RedisKeys(DEFAULT_KEY_PREFIX)  # the store's names by default; the prefix test spells its own


class Recorder:
    """The app's side of StoreEvents, written down."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str]] = []
        self.closed: list[tuple[str, int]] = []
        self.refused: list[str] = []

    def events(self) -> StoreEvents:
        async def deliver(worker_id: str, frame: str) -> None:
            self.delivered.append((worker_id, frame))

        async def close(worker_id: str, connection_id: int) -> None:
            self.closed.append((worker_id, connection_id))

        async def refuse(worker_id: str) -> None:
            self.refused.append(worker_id)

        return StoreEvents(deliver=deliver, close=close, refuse=refuse)


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def started(url: str, instance: str, recorder: Recorder) -> RedisStore:
    store = RedisStore(Registry(), url, ttl_sec=3.0, instance_id=instance)
    await store.start(recorder.events())
    assert store.ready, store.not_ready_reason
    return store


async def register(store: RedisStore, worker_id: str, connection_id: int, port: int) -> None:
    store.registry.connect(worker_id, connection_id, "127.0.0.1", 50000, now=1.0)
    record = store.registry.get(worker_id)
    assert record is not None
    claim = await store.connect(record, "identity")
    assert claim.accepted and claim.checked
    update = UpdateUdpEndpoint("203.0.113.9", port, MappingBehaviour.ENDPOINT_INDEPENDENT, None)
    store.registry.update_udp_endpoint(worker_id, connection_id, update, now=2.0)
    await store.save(record)


def test_records_survive_the_round_trip_through_json() -> None:
    bare = WorkerRecord("w", 7, None, None, 1.5)
    assert decode_record("w", encode_record(bare)) == bare
    full = WorkerRecord(
        "w",
        8,
        "192.0.2.1",
        4000,
        1.25,
        reported_public_ip="198.51.100.2",
        udp_endpoint=UdpEndpoint("203.0.113.1", 9, MappingBehaviour.ENDPOINT_DEPENDENT, 5000),
        udp_updated_at=3.5,
        udp_update_count=4,
        tags=("gpu", "team-a"),
    )
    assert decode_record("w", encode_record(full)) == full
    assert decode_record("w", None) is None and decode_record("w", "{not json") is None
    assert decode_record("w", '{"oip": "x"}') is None  # no connection id: unreadable


def test_registry_url_and_ttl_come_from_the_environment() -> None:
    base = {"AUTH_MODE": "none"}
    assert RendezvousConfig.from_env(base).registry_url is None
    assert RendezvousConfig.from_env({**base, "REGISTRY_URL": "memory://"}).registry_url is None
    config = RendezvousConfig.from_env(
        {**base, "REGISTRY_URL": "redis://10.0.0.3:6379/0", "REGISTRY_TTL_SEC": "30"}
    )
    assert config.registry_url == "redis://10.0.0.3:6379/0"
    shared = build_store(
        Registry(), config.registry_url, config.registry_ttl_sec, WorkerOwnership()
    )
    assert isinstance(shared, RedisStore)  # made, not connected: nothing listens there
    assert (shared.ttl_sec, shared.heartbeat_sec) == (30.0, 10.0)
    with pytest.raises(ConfigError, match="REGISTRY_URL") as bad:
        RendezvousConfig.from_env({**base, "REGISTRY_URL": "http://user:secret@host"})
    assert "secret" not in str(bad.value)  # a password in the URL is never logged
    with pytest.raises(ConfigError, match="REGISTRY_TTL_SEC"):
        RendezvousConfig.from_env({**base, "REGISTRY_TTL_SEC": "1"})
    assert isinstance(build_store(Registry(), None, 15.0, WorkerOwnership()), MemoryStore)


async def test_a_registration_is_two_round_trips_and_a_page_one(
    redis_server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    store = await started(redis_server.url, "inst-a", Recorder())
    try:
        before = dict(store.round_trips)
        await register(store, "w1", 1, 41000)
        spent = {k: v - before.get(k, 0) for k, v in store.round_trips.items()}
        assert {k: v for k, v in spent.items() if v} == {"connect": 1, "save": 1}
        before = dict(store.round_trips)
        page = await store.page(limit=10, cursor=None)
        assert store.round_trips["page"] - before.get("page", 0) == 1
        assert [r.worker_id for r in page.records] == ["w1"] and page.next_cursor is None
        endpoint = page.records[0].udp_endpoint
        assert endpoint is not None and endpoint.port == 41000
        assert await raw.ttl(KEYS.worker("w1")) in (2, 3)  # the TTL, in seconds

        # An entry that expired while this instance was cut off still leaves the index.
        await register(store, "w2", 2, 41001)
        await raw.delete(KEYS.worker("w2"))
        store.registry.disconnect("w2", 2)
        await store.remove("w2")
        assert await raw.zscore(KEYS.ids, "w2") is None
    finally:
        await store.stop()
    # A clean stop forgets the instance.
    assert not await raw.zscore(KEYS.instances, "inst-a")


async def test_recovery_republishes_in_batches_and_replays_removals(
    redis_server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    store = await started(redis_server.url, "inst-a", Recorder())
    try:
        for index in range(1200):
            await register(store, f"w{index:04d}", index + 1, 40000 + index)
        assert process_of(redis_server) is not None
        os.kill(process_of(redis_server), signal.SIGSTOP)  # Redis hangs, keeping its data
        try:
            record = store.registry.get("w0000")
            assert record is not None
            await store.save(record)  # times out: unavailable from now on
            assert not store.ready and "unavailable" in (store.not_ready_reason or "")
            store.registry.disconnect("w0001", 2)
            await store.remove("w0001")  # remembered, not attempted
        finally:
            os.kill(process_of(redis_server), signal.SIGCONT)
        before = store.round_trips["republish"]
        await eventually(lambda: store.ready, timeout=10, what="recovered")
        assert store.round_trips["republish"] - before == 3  # 1,199 workers, 500 a batch
        assert not await raw.exists(KEYS.worker("w0001"))  # no stale entry left behind
        assert await raw.zscore(KEYS.ids, "w0001") is None
        assert await raw.exists(KEYS.worker("w0002"))
        page = await store.page(limit=None, cursor=None)
        assert page.count == 1199
    finally:
        await store.stop()


def process_of(server: RedisServer) -> int:
    assert server.process is not None
    return server.process.pid


async def test_republishing_yields_to_a_newer_connection_elsewhere(
    redis_server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    events = Recorder()
    a = await started(redis_server.url, "inst-a", events)
    try:
        await register(a, "moved", 1, 41001)
        await register(a, "stayed", 2, 41002)
        # While a is cut off (as if its Redis connection broke), the worker reconnects to
        # another instance, which writes its entry (written here by hand: no close message
        # reaches a, so only the republishing can notice).
        a._failed(ConnectionError("cut off for the test"))
        newer = WorkerRecord("moved", 9, "127.0.0.1", 50001, 5.0)
        await raw.hset(
            KEYS.worker("moved"), mapping={"inst": "inst-x", "conn": 9, "rec": encode_record(newer)}
        )
        await eventually(lambda: a.ready, timeout=10, what="a recovered")
        # That entry is newer: a closes its own connection instead of taking the id back.
        assert events.closed == [("moved", 1)] and events.refused == []
        assert await raw.hget(KEYS.worker("moved"), "inst") == "inst-x"
        assert await raw.hget(KEYS.worker("stayed"), "inst") == "inst-a"
    finally:
        await a.stop()


async def test_every_key_and_channel_is_named_under_the_store_prefix(
    redis_server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    before = set(await raw.keys("*"))
    events = Recorder()
    store = RedisStore(Registry(), redis_server.url, ttl_sec=3.0, prefix="p2:", instance_id="i2")
    await store.start(events.events())
    try:
        assert store.ready, store.not_ready_reason
        await register(store, "w1", 1, 41000)
        session = PunchSessionTable().create("w1", "w2", 1.0, relay_first=False)
        await store.save_session(session)
        written = set(await raw.keys("*")) - before
        assert written == {
            "p2:w:w1",
            "p2:ids",
            "p2:own:w1",
            "p2:i:i2",
            "p2:instances",
            f"p2:s:{session.session_id}",
            "p2:ws:w1",
            "p2:ws:w2",
        }
        assert await store.route("w1", "frame")  # published on p2:ch:i2, to itself
        await eventually(lambda: events.delivered == [("w1", "frame")], what="routed")
        store.registry.disconnect("w1", 1)
        await store.remove("w1")
        assert not await raw.exists("p2:w:w1", f"p2:s:{session.session_id}", "p2:ws:w1")
    finally:
        await store.stop()
