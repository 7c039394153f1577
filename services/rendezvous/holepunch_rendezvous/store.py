"""Where the registry lives: in this process, or shared by every instance through Redis.

Every instance keeps the workers connected *to it* in its own sans-I/O `Registry` (the
source of truth for its connections, and all that `MemoryStore` needs). `RedisStore`
publishes those records to Redis, so that any instance can list them, introduce them and
route messages to them:

    {prefix}w:{worker_id}      hash: the record, plus `inst` (instance) and `conn`; PX ttl,
                               refreshed by the owning instance's heartbeat
    {prefix}ids                sorted set, every score 0: worker ids in order (pages)
    {prefix}own:{worker_id}    string: the identity that owns the id; PX 24 h
    {prefix}i:{instance}       set: worker ids an instance holds (swept when it dies)
    {prefix}instances          sorted set: instance -> last heartbeat (Redis TIME, ms)
    {prefix}s:{session_id}     hash: a punch session's members and secret; PX session ttl
    {prefix}ws:{worker_id}     set: the worker's session ids; PX session ttl
    {prefix}ch:{instance}      pub/sub channel: deliveries and closes for that instance

Each write is one Lua script (one round trip, atomic): a registration is two (claim the
id and publish the record; then its endpoint), a relayed datagram to another instance
one. The scripts build key names from the prefix, so this needs a single Redis (as
Memorystore's Basic and Standard tiers are), not Redis Cluster.

When Redis fails, the instance keeps serving its own connections from its registry,
reports itself not ready, and replays what it missed when Redis answers again: its
workers are published anew (their ownership claimed again) and the entries of workers
that left in the meantime are removed.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from holepunch_logging import log_event
from holepunch_protocol import MappingBehaviour

from holepunch_rendezvous.registry import Registry, UdpEndpoint, WorkerRecord
from holepunch_rendezvous.sessions import PunchSession

__all__ = [
    "Claim",
    "MemoryStore",
    "RedisStore",
    "RegistryStore",
    "SharedPage",
    "StoreEvents",
    "decode_record",
    "encode_record",
]

logger = logging.getLogger("holepunch.rendezvous")

OWNERSHIP_TTL_SEC = 86_400.0
SESSION_TTL_SEC = 3_600.0
RETRY_DELAY_SEC = 0.5
PUBLISH_BATCH = 500
REDIS_TIMEOUT_SEC = 2.0


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to a registration: refused (another identity owns the id), or accepted,
    naming the connection it replaced on another instance, if any. `checked` is False
    when the store could not tell (Redis away): the caller decides with its own table, and
    the claim is made in Redis on recovery."""

    accepted: bool
    replaced_instance: str | None = None
    replaced_connection_id: int | None = None
    checked: bool = True


@dataclass(frozen=True, slots=True)
class SharedPage:
    count: int
    records: list[WorkerRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class StoreEvents:
    """What the store asks of the app, for messages other instances publish to this one."""

    deliver: Callable[[str, str], Awaitable[None]]  # (worker_id, encoded frame)
    close: Callable[[str, int], Awaitable[None]]  # (worker_id, connection_id): replaced
    refuse: Callable[[str], Awaitable[None]]  # worker_id: another identity owns it now


class RegistryStore(abc.ABC):
    """The registry as the app sees it. `shared` tells the app whether it must await the
    store at all: the in-memory store never needs it, so that path has no extra awaits."""

    shared: ClassVar[bool]

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @property
    def ready(self) -> bool:
        return True

    @property
    def not_ready_reason(self) -> str | None:
        return None

    async def start(self, events: StoreEvents) -> None:  # noqa: B027 (optional hook)
        """Begin background work (heartbeats, subscriptions)."""

    async def stop(self) -> None:  # noqa: B027 (optional hook)
        """End background work and release connections."""

    def describe(self) -> dict[str, Any]:
        return {"backend": "memory" if not self.shared else "redis"}

    @abc.abstractmethod
    async def connect(self, record: WorkerRecord, identity: str) -> Claim: ...

    @abc.abstractmethod
    async def save(self, record: WorkerRecord) -> None: ...

    @abc.abstractmethod
    async def remove(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    async def lookup(self, worker_id: str) -> WorkerRecord | None: ...

    @abc.abstractmethod
    async def page(self, limit: int | None, cursor: str | None) -> SharedPage: ...

    @abc.abstractmethod
    async def save_session(self, session: PunchSession) -> None: ...

    @abc.abstractmethod
    async def load_session(self, session_id: str) -> PunchSession | None: ...

    @abc.abstractmethod
    async def route(self, worker_id: str, frame: str) -> bool: ...


class MemoryStore(RegistryStore):
    """Today's registry: this process only. The app reads and writes `registry` directly
    (`shared` is False); these methods exist for code written against the interface."""

    shared = False

    async def connect(self, record: WorkerRecord, identity: str) -> Claim:
        return Claim(accepted=True, checked=False)  # the app keeps ownership itself

    async def save(self, record: WorkerRecord) -> None:
        return None

    async def remove(self, worker_id: str) -> None:
        return None

    async def lookup(self, worker_id: str) -> WorkerRecord | None:
        return self.registry.get(worker_id)

    async def page(self, limit: int | None, cursor: str | None) -> SharedPage:
        page = self.registry.page(limit=limit, cursor=cursor)
        return SharedPage(len(self.registry), page.records, page.next_cursor)

    async def save_session(self, session: PunchSession) -> None:
        return None

    async def load_session(self, session_id: str) -> PunchSession | None:
        return None

    async def route(self, worker_id: str, frame: str) -> bool:
        return False


# --- Records in Redis hashes -------------------------------------------------------------


def encode_record(record: WorkerRecord) -> str:
    """The record as compact JSON (one bulk string: cheap to list by the thousand)."""
    endpoint = record.udp_endpoint
    fields: dict[str, object] = {
        "conn": record.connection_id,
        "oip": record.observed_ip,
        "oport": record.observed_port,
        "at": record.connected_at,
        "pip": record.reported_public_ip,
        "uat": record.udp_updated_at,
        "n": record.udp_update_count,
    }
    if endpoint is not None:
        fields["uip"] = endpoint.ip
        fields["uport"] = endpoint.port
        fields["map"] = endpoint.mapping.value if endpoint.mapping else None
        fields["lport"] = endpoint.local_port
    return orjson.dumps({key: value for key, value in fields.items() if value is not None}).decode()


def decode_record(worker_id: str, text: str | None) -> WorkerRecord | None:
    """The record `encode_record` wrote; None for a missing (expired) or unreadable one."""
    if not text:
        return None
    try:
        # orjson: a listing decodes one record per worker, 5,000 at a time.
        fields = orjson.loads(text)
        endpoint = None
        if "uip" in fields and "uport" in fields:
            mapping = fields.get("map")
            endpoint = UdpEndpoint(
                str(fields["uip"]),
                int(fields["uport"]),
                MappingBehaviour(mapping) if mapping else None,
                fields.get("lport"),
            )
        return WorkerRecord(
            worker_id=worker_id,
            connection_id=int(fields["conn"]),
            observed_ip=fields.get("oip"),
            observed_port=fields.get("oport"),
            connected_at=float(fields.get("at", 0.0)),
            reported_public_ip=fields.get("pip"),
            udp_endpoint=endpoint,
            udp_updated_at=fields.get("uat"),
            udp_update_count=int(fields.get("n", 0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# --- Lua scripts: each one round trip, atomic ----------------------------------------------

# ARGV: prefix, worker_id, instance, identity, ttl_ms, ownership_ttl_ms, conn, record,
# republish ('1': an entry another instance holds wins, it is newer than ours)
# -> {0} refused; {2} yielded; {1, replaced instance or "", replaced connection or ""}
CONNECT_SCRIPT = """
local p, wid, inst, identity = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local own = p .. 'own:' .. wid
local owner = redis.call('GET', own)
if owner and owner ~= identity then return {0} end
local key = p .. 'w:' .. wid
local old = redis.call('HMGET', key, 'inst', 'conn')
if ARGV[9] == '1' and old[1] and old[1] ~= inst then return {2} end
redis.call('SET', own, identity, 'PX', ARGV[6])
redis.call('HSET', key, 'inst', inst, 'conn', ARGV[7], 'rec', ARGV[8])
redis.call('PEXPIRE', key, ARGV[5])
redis.call('ZADD', p .. 'ids', 0, wid)
redis.call('SADD', p .. 'i:' .. inst, wid)
if old[1] and old[1] ~= inst then
  redis.call('SREM', p .. 'i:' .. old[1], wid)
  redis.call('PUBLISH', p .. 'ch:' .. old[1],
    cjson.encode({op = 'close', w = wid, c = tonumber(old[2])}))
end
return {1, old[1] or '', old[2] or ''}
"""

# ARGV: prefix, worker_id, instance, ttl_ms, conn, record -> 1 written, 0 not ours
SAVE_SCRIPT = """
local key = ARGV[1] .. 'w:' .. ARGV[2]
if redis.call('HGET', key, 'inst') ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'conn', ARGV[5], 'rec', ARGV[6])
redis.call('PEXPIRE', key, ARGV[4])
return 1
"""

# ARGV: prefix, start ('-' or '(' .. cursor), limit (0: all) -> {index size, ids,
# records, more}. Ids whose record expired (their instance died) are left out and
# dropped from the index on the way.
PAGE_SCRIPT = """
local p, limit = ARGV[1], tonumber(ARGV[3])
local index = p .. 'ids'
local ids
if limit > 0 then
  ids = redis.call('ZRANGE', index, ARGV[2], '+', 'BYLEX', 'LIMIT', 0, limit + 1)
else
  ids = redis.call('ZRANGE', index, ARGV[2], '+', 'BYLEX')
end
local more = 0
if limit > 0 and #ids > limit then
  more = 1
  ids[#ids] = nil
end
local found, records, last = {}, {}, ''
for _, wid in ipairs(ids) do
  last = wid
  local record = redis.call('HGET', p .. 'w:' .. wid, 'rec')
  if record then
    found[#found + 1] = wid
    records[#records + 1] = record
  else
    redis.call('ZREM', index, wid)
  end
end
return {redis.call('ZCARD', index), found, records, more, last}
"""

# ARGV: prefix, worker_id, instance, ownership_ttl_ms -> 1 removed, 0 not ours. An entry
# that already expired (this instance was cut off from Redis for longer than the TTL)
# still has its index entry removed.
REMOVE_SCRIPT = """
local p, wid, inst = ARGV[1], ARGV[2], ARGV[3]
redis.call('SREM', p .. 'i:' .. inst, wid)
redis.call('PEXPIRE', p .. 'own:' .. wid, ARGV[4])
local key = p .. 'w:' .. wid
local owner = redis.call('HGET', key, 'inst')
if owner and owner ~= inst then return 0 end
redis.call('DEL', key)
redis.call('ZREM', p .. 'ids', wid)
local sessions = p .. 'ws:' .. wid
for _, sid in ipairs(redis.call('SMEMBERS', sessions)) do
  redis.call('DEL', p .. 's:' .. sid)
end
redis.call('DEL', sessions)
return 1
"""

# ARGV: prefix, instance, ttl_ms, worker_id... -> {worker ids missing from Redis, dead
# instances swept}. Refreshes this instance's entries (only those it still owns) and
# removes the index entries of instances whose last heartbeat is older than the TTL:
# their hashes have expired by then, since both were set from the same heartbeat.
HEARTBEAT_SCRIPT = """
local p, inst, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', p .. 'instances', now, inst)
local missing = {}
for i = 4, #ARGV do
  local key = p .. 'w:' .. ARGV[i]
  local owner = redis.call('HGET', key, 'inst')
  if owner == inst then
    redis.call('PEXPIRE', key, ttl)
  elseif not owner then
    missing[#missing + 1] = ARGV[i]
  end
end
local dead = redis.call('ZRANGEBYSCORE', p .. 'instances', '-inf', now - ttl)
for _, d in ipairs(dead) do
  local held = p .. 'i:' .. d
  for _, wid in ipairs(redis.call('SMEMBERS', held)) do
    local key = p .. 'w:' .. wid
    local owner = redis.call('HGET', key, 'inst')
    if owner == d then
      redis.call('DEL', key)
      owner = false
    end
    if not owner then redis.call('ZREM', p .. 'ids', wid) end
  end
  redis.call('DEL', held)
  redis.call('ZREM', p .. 'instances', d)
end
return {missing, #dead}
"""

# ARGV: prefix, worker_id, message -> the instance it was published to, or false
ROUTE_SCRIPT = """
local inst = redis.call('HGET', ARGV[1] .. 'w:' .. ARGV[2], 'inst')
if not inst then return false end
redis.call('PUBLISH', ARGV[1] .. 'ch:' .. inst, ARGV[3])
return inst
"""

# ARGV: prefix, instance: a clean stop forgets the instance (its workers are gone).
FORGET_INSTANCE_SCRIPT = """
redis.call('DEL', ARGV[1] .. 'i:' .. ARGV[2])
redis.call('ZREM', ARGV[1] .. 'instances', ARGV[2])
return 1
"""


def _instance_id() -> str:
    # Cloud Run names neither the instance nor the container; the host name and a random
    # suffix are unique enough and readable in logs.
    return f"{socket.gethostname()[:32]}-{os.urandom(4).hex()}"


def _ms(seconds: float) -> str:
    return str(max(1, int(seconds * 1000)))


class RedisStore(RegistryStore):
    """The registry shared through Redis (redis.asyncio): see the module docstring."""

    shared = True

    def __init__(
        self,
        registry: Registry,
        url: str,
        *,
        ttl_sec: float = 15.0,
        heartbeat_sec: float | None = None,
        prefix: str = "holepunch:",
        instance_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(registry)
        # Imported here: a memory-only deployment never loads the client.
        import redis.asyncio as redis_asyncio
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.ttl_sec = ttl_sec
        self.heartbeat_sec = heartbeat_sec if heartbeat_sec is not None else ttl_sec / 3
        self.prefix = prefix
        self.instance_id = instance_id or _instance_id()
        self.clock = clock
        # Bounded waits, no silent retries: a failed call marks Redis unavailable and the
        # maintenance loop takes over.
        self._client: Any = redis_asyncio.from_url(  # type: ignore[no-untyped-call]
            url,
            decode_responses=True,
            socket_timeout=REDIS_TIMEOUT_SEC,
            socket_connect_timeout=REDIS_TIMEOUT_SEC,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
        self._connect = self._client.register_script(CONNECT_SCRIPT)
        self._save = self._client.register_script(SAVE_SCRIPT)
        self._remove = self._client.register_script(REMOVE_SCRIPT)
        self._heartbeat = self._client.register_script(HEARTBEAT_SCRIPT)
        self._route = self._client.register_script(ROUTE_SCRIPT)
        self._forget = self._client.register_script(FORGET_INSTANCE_SCRIPT)
        self._page = self._client.register_script(PAGE_SCRIPT)
        self._scripts = [
            self._connect,
            self._save,
            self._remove,
            self._heartbeat,
            self._route,
            self._forget,
            self._page,
        ]
        self._channel = f"{prefix}ch:{self.instance_id}"
        self._identities: dict[str, str] = {}  # worker_id -> identity, for re-publishing
        self._pending_removals: set[str] = set()
        self._available = False  # until the first heartbeat answers
        self._subscribed = False
        self._recovering = False
        self._reason: str | None = "not started"
        self._down_since: float | None = None
        self._unavailable_logged = False
        self._events: StoreEvents | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._became_ready = asyncio.Event()
        self.round_trips: collections.Counter[str] = collections.Counter()

    # --- readiness ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._available and self._subscribed and not self._recovering

    @property
    def not_ready_reason(self) -> str | None:
        if self.ready:
            return None
        if self._recovering:
            return "publishing this instance's workers to the registry again"
        if not self._subscribed and self._available:
            return "not subscribed to this instance's channel yet"
        return f"registry unavailable: {self._reason}"

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "instance_id": self.instance_id,
            "ready": self.ready,
            "reason": self.not_ready_reason,
            "ttl_sec": self.ttl_sec,
            "heartbeat_sec": self.heartbeat_sec,
            "round_trips": dict(self.round_trips),
        }

    def _failed(self, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"[:300]
        self._reason = reason
        if self._available or not self._unavailable_logged:
            self._down_since = self._down_since or self.clock()
            self._unavailable_logged = True
            log_event(
                logger,
                "registry_unavailable",
                f"Shared registry unavailable ({reason}): serving local connections only",
                level=logging.WARNING,
                reason=reason,
                instance_id=self.instance_id,
                workers=len(self.registry),
            )
        self._available = False
        self._wake.set()

    async def _call(self, name: str, script: Any, args: list[Any]) -> Any:
        self.round_trips[name] += 1
        return await script(args=args)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, events: StoreEvents) -> None:
        self._events = events
        self._tasks = [
            asyncio.create_task(self._maintain(), name="registry-heartbeat"),
            asyncio.create_task(self._subscribe(), name="registry-subscriber"),
        ]
        # Serve at once either way; readiness says whether Redis is there.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wait_ready(), REDIS_TIMEOUT_SEC * 2)

    async def _wait_ready(self) -> None:
        await self._became_ready.wait()

    def _note_ready(self) -> None:
        if self.ready:
            self._became_ready.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=REDIS_TIMEOUT_SEC)
        self._tasks = []
        if self._available:
            with contextlib.suppress(Exception):
                await self._call("forget", self._forget, [self.prefix, self.instance_id])
        with contextlib.suppress(Exception):
            await self._client.aclose()

    # --- the registry ------------------------------------------------------------------

    async def connect(self, record: WorkerRecord, identity: str) -> Claim:
        self._identities[record.worker_id] = identity
        self._pending_removals.discard(record.worker_id)
        if not self._available:
            return Claim(accepted=True, checked=False)  # claimed in Redis on recovery
        try:
            return await self._claim(record, identity)
        except Exception as error:  # redis errors, timeouts, OSError
            self._failed(error)
            return Claim(accepted=True, checked=False)

    def _claim_args(self, record: WorkerRecord, identity: str, republish: bool) -> list[Any]:
        return [
            self.prefix,
            record.worker_id,
            self.instance_id,
            identity,
            _ms(self.ttl_sec),
            _ms(OWNERSHIP_TTL_SEC),
            record.connection_id,
            encode_record(record),
            "1" if republish else "0",
        ]

    async def _claim(self, record: WorkerRecord, identity: str) -> Claim:
        answer = await self._call(
            "connect", self._connect, self._claim_args(record, identity, False)
        )
        if int(answer[0]) == 0:
            self._identities.pop(record.worker_id, None)
            return Claim(accepted=False)
        instance, connection = answer[1], answer[2]
        if instance and instance != self.instance_id:
            return Claim(True, instance, int(connection) if connection else None)
        return Claim(accepted=True)

    async def save(self, record: WorkerRecord) -> None:
        if not self._available:
            return  # the whole record is published again on recovery
        try:
            await self._call(
                "save",
                self._save,
                [
                    self.prefix,
                    record.worker_id,
                    self.instance_id,
                    _ms(self.ttl_sec),
                    record.connection_id,
                    encode_record(record),
                ],
            )
        except Exception as error:
            self._failed(error)

    async def remove(self, worker_id: str) -> None:
        self._identities.pop(worker_id, None)
        if not self._available:
            self._pending_removals.add(worker_id)
            return
        try:
            await self._call(
                "remove",
                self._remove,
                [self.prefix, worker_id, self.instance_id, _ms(OWNERSHIP_TTL_SEC)],
            )
        except Exception as error:
            self._pending_removals.add(worker_id)
            self._failed(error)

    async def lookup(self, worker_id: str) -> WorkerRecord | None:
        local = self.registry.get(worker_id)
        if local is not None or not self._available:
            return local
        try:
            self.round_trips["lookup"] += 1
            text = await self._client.hget(f"{self.prefix}w:{worker_id}", "rec")
        except Exception as error:
            self._failed(error)
            return None
        return decode_record(worker_id, text)

    async def page(self, limit: int | None, cursor: str | None) -> SharedPage:
        if not self._available:
            page = self.registry.page(limit=limit, cursor=cursor)
            return SharedPage(len(self.registry), page.records, page.next_cursor)
        start = "-" if cursor is None else f"({cursor}"
        try:
            count, ids, texts, more, last = await self._call(
                "page", self._page, [self.prefix, start, limit or 0]
            )
        except Exception as error:
            self._failed(error)
            page = self.registry.page(limit=limit, cursor=cursor)
            return SharedPage(len(self.registry), page.records, page.next_cursor)
        records = [
            record
            for worker_id, text in zip(ids, texts, strict=True)
            if (record := decode_record(worker_id, text)) is not None
        ]
        if limit is None and cursor is None:
            count = len(records)  # exact, even before the index is swept
        return SharedPage(int(count), records, last if int(more) and last else None)

    # --- sessions and deliveries -------------------------------------------------------

    async def save_session(self, session: PunchSession) -> None:
        if not self._available:
            return
        key = f"{self.prefix}s:{session.session_id}"
        ttl = int(SESSION_TTL_SEC * 1000)
        try:
            self.round_trips["save_session"] += 1
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    key,
                    mapping={
                        "secret": session.secret,
                        "initiator": session.initiator,
                        "responder": session.responder,
                        "created_at": repr(session.created_at),
                        "relay_first": "1" if session.relay_first else "0",
                    },
                )
                pipe.pexpire(key, ttl)
                for worker_id in session.members():
                    pipe.sadd(f"{self.prefix}ws:{worker_id}", session.session_id)
                    pipe.pexpire(f"{self.prefix}ws:{worker_id}", ttl)
                await pipe.execute()
        except Exception as error:
            self._failed(error)

    async def load_session(self, session_id: str) -> PunchSession | None:
        if not self._available:
            return None
        try:
            self.round_trips["load_session"] += 1
            fields = await self._client.hgetall(f"{self.prefix}s:{session_id}")
        except Exception as error:
            self._failed(error)
            return None
        try:
            return PunchSession(
                session_id=session_id,
                secret=fields["secret"],
                initiator=fields["initiator"],
                responder=fields["responder"],
                created_at=float(fields["created_at"]),
                relay_first=fields.get("relay_first") == "1",
            )
        except (KeyError, ValueError):
            return None

    async def route(self, worker_id: str, frame: str) -> bool:
        """Publish a frame for a worker connected to another instance."""
        if not self._available:
            return False
        message = json.dumps({"op": "deliver", "w": worker_id, "f": frame})
        try:
            instance = await self._call("route", self._route, [self.prefix, worker_id, message])
        except Exception as error:
            self._failed(error)
            return False
        return bool(instance)

    # --- background: heartbeat, recovery, subscription ---------------------------------

    async def _maintain(self) -> None:
        while True:
            try:
                if self._available:
                    await self._beat()
                else:
                    await self._recover()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._failed(error)
            delay = self.heartbeat_sec if self._available else RETRY_DELAY_SEC
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _beat(self) -> None:
        missing, _swept = await self._call(
            "heartbeat",
            self._heartbeat,
            [self.prefix, self.instance_id, _ms(self.ttl_sec), *self._local_ids()],
        )
        if missing:  # e.g. Redis restarted between two heartbeats, losing its data
            await self._publish(missing)

    def _local_ids(self) -> list[str]:
        return [record.worker_id for record in self.registry]

    async def _publish(self, worker_ids: Iterable[str]) -> int:
        """Publish local workers again (after an outage, or when their entries vanished),
        `PUBLISH_BATCH` to a round trip. An id another identity took meanwhile is refused
        (4403) here; one another instance holds now is newer than ours: ours is closed
        as replaced (4409)."""
        published = 0
        batch: list[WorkerRecord] = []
        for worker_id in list(worker_ids):
            record = self.registry.get(worker_id)
            if record is not None and worker_id in self._identities:
                batch.append(record)
        for first in range(0, len(batch), PUBLISH_BATCH):
            chunk = batch[first : first + PUBLISH_BATCH]
            self.round_trips["republish"] += 1
            async with self._client.pipeline(transaction=False) as pipe:
                for record in chunk:
                    args = self._claim_args(record, self._identities[record.worker_id], True)
                    await self._connect(args=args, client=pipe)
                answers = await pipe.execute()
            for record, answer in zip(chunk, answers, strict=True):
                outcome = int(answer[0])
                if outcome == 1:
                    published += 1
                elif self._events is not None and outcome == 0:
                    await self._events.refuse(record.worker_id)
                elif self._events is not None:
                    await self._events.close(record.worker_id, record.connection_id)
        return published

    async def _recover(self) -> None:
        self.round_trips["ping"] += 1
        await self._client.ping()
        # A restarted Redis has no scripts: load them once here rather than have every
        # concurrent first call fail with NOSCRIPT and retry.
        self.round_trips["script_load"] += 1
        async with self._client.pipeline(transaction=False) as pipe:
            for script in self._scripts:
                pipe.script_load(script.script)
            await pipe.execute()
        # Entries of workers that left while Redis was away, then everyone still here.
        for worker_id in list(self._pending_removals):
            if self.registry.get(worker_id) is None:
                await self._call(
                    "remove",
                    self._remove,
                    [self.prefix, worker_id, self.instance_id, _ms(OWNERSHIP_TTL_SEC)],
                )
            self._pending_removals.discard(worker_id)
        await self._call(
            "heartbeat", self._heartbeat, [self.prefix, self.instance_id, _ms(self.ttl_sec)]
        )
        # Writes resume before the local workers are published again, so that an update
        # arriving meanwhile is not lost; readiness waits for the whole registry.
        self._available = True
        self._recovering = True
        try:
            published = await self._publish(self._local_ids())
        finally:
            self._recovering = False
        was_down = self._unavailable_logged
        down_for = None if self._down_since is None else self.clock() - self._down_since
        self._note_ready()
        self._reason = None
        self._down_since = None
        self._unavailable_logged = False
        if was_down:
            log_event(
                logger,
                "registry_recovered",
                f"Shared registry back: {published} local workers published again",
                instance_id=self.instance_id,
                workers=published,
                down_sec=None if down_for is None else round(down_for, 3),
            )

    async def _subscribe(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed = True
                self._note_ready()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        await self._dispatch(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._subscribed = False
                self._failed(error)
            finally:
                self._subscribed = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RETRY_DELAY_SEC)

    async def _dispatch(self, data: object) -> None:
        if self._events is None or not isinstance(data, str):
            return
        try:
            message = json.loads(data)
            worker_id = message["w"]
            if message["op"] == "deliver":
                await self._events.deliver(worker_id, message["f"])
            elif message["op"] == "close":
                await self._events.close(worker_id, int(message["c"]))
        except (ValueError, KeyError, TypeError):
            log_event(
                logger,
                "registry_message_invalid",
                "Ignored an unreadable message on this instance's channel",
                level=logging.WARNING,
                reason=str(data)[:200],
            )


def build_store(registry: Registry, url: str | None, ttl_sec: float) -> RegistryStore:
    if url is None:
        return MemoryStore(registry)
    return RedisStore(registry, url, ttl_sec=ttl_sec)
