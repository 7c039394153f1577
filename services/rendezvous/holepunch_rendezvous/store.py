"""Where the registry lives: in this process, or shared by every instance through Redis.

Every instance keeps the workers connected *to it* in its own sans-I/O `Registry` (the
source of truth for its connections, and all that `MemoryStore` needs). `RedisStore`
publishes those records to Redis, so that any instance can list them, introduce them and
route messages to them. The app drives either store the same way (`RegistryStore`):
claim a worker_id on connect, fetch what a message needs before the pure handler runs,
publish what the handler changed, route deliveries for workers connected elsewhere, and
release the id on disconnect. A new backend is one more `RegistryStore` class.

Redis keys (names built only by `RedisKeys`, for Python and, as the table `K`, for Lua):

    {prefix}w:{worker_id}      hash: the record, plus `inst` (instance) and `conn`; PX ttl,
                               refreshed by the owning instance's heartbeat
    {prefix}ids                sorted set, every score 0: worker ids in order (pages)
    {prefix}own:{worker_id}    string: the identity that owns the id; PX 24 h
    {prefix}key:{worker_id}    string: the public key the id is bound to; no expiry while
                               a connection of that key is current, then PX
                               KEY_BINDING_TTL_SEC; deleted by an operator's release
    {prefix}i:{instance}       set: worker ids an instance holds (swept when it dies)
    {prefix}instances          sorted set: instance -> last heartbeat (Redis TIME, ms)
    {prefix}s:{session_id}     hash: a punch session's members and secret; PX session ttl
    {prefix}ws:{worker_id}     set: the worker's session ids; PX session ttl
    {prefix}ch:{instance}      pub/sub channel: deliveries and closes for that instance

Each write is one Lua script (one round trip, atomic; the scripts are `lua/*.lua`): a
registration is two (claim the id and publish the record; then its endpoint), a relayed
datagram to another instance one. The scripts build key names within a script, so this
needs a single Redis (as Memorystore's Basic and Standard tiers are), not Redis Cluster.

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
import importlib.resources
import json
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from holepunch_logging import RendezvousEvent, log_event
from holepunch_protocol import MappingBehaviour

from holepunch_rendezvous.auth import OWNERSHIP_TTL_SEC, WorkerOwnership
from holepunch_rendezvous.handler import Lookups, RecordLookup
from holepunch_rendezvous.identity import KeyBindings
from holepunch_rendezvous.punch_sessions import PunchSessionRecord, PunchSessionTable
from holepunch_rendezvous.registry import Page, Registry, UdpEndpoint, WorkerRecord

__all__ = [
    "Claim",
    "MemoryStore",
    "RedisKeys",
    "RedisStore",
    "RegistryStore",
    "StoreEvents",
    "build_store",
    "decode_record",
    "encode_record",
]

logger = logging.getLogger("holepunch.rendezvous")

SESSION_TTL_SEC = 3_600.0
RETRY_DELAY_SEC = 0.5
PUBLISH_BATCH = 500
REDIS_TIMEOUT_SEC = 2.0


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to a registration: refused (another identity owns the id), or accepted,
    naming the connection it replaced on another instance, if any. `checked` is False
    when the shared store could not tell (Redis away): the instance decided with its own
    table, and the claim is made in Redis on recovery."""

    accepted: bool
    replaced_instance: str | None = None
    replaced_connection_id: int | None = None
    checked: bool = True


@dataclass(frozen=True, slots=True)
class StoreEvents:
    """What the store asks of the app, for messages other instances publish to this one."""

    deliver: Callable[[str, str], Awaitable[None]]  # (worker_id, encoded frame)
    close: Callable[[str, int], Awaitable[None]]  # (worker_id, connection_id): replaced
    refuse: Callable[[str], Awaitable[None]]  # worker_id: another identity owns it now
    # A batch of the fleet page's changes (ui/feed.py) from any instance; None: not wanted.
    feed: Callable[[str], None] | None = None


class RegistryStore(abc.ABC):
    """The registry as the app sees it, whatever holds it.

    `registry` is this process's own table of its connections, which the app changes
    through the pure handler; the store publishes those changes wherever it keeps them,
    and finds what lives elsewhere. `ownership` is this process's table of worker_id
    owners (the only one in memory; the fallback while a shared store is away), and
    `bindings` its table of worker_id -> public key, likewise.
    """

    backend: ClassVar[str]

    def __init__(
        self,
        registry: Registry,
        ownership: WorkerOwnership,
        clock: Callable[[], float],
        bindings: KeyBindings | None = None,
    ) -> None:
        self.registry = registry
        self.ownership = ownership
        self.clock = clock
        self.bindings = bindings if bindings is not None else KeyBindings()

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
        return {"backend": self.backend}

    @abc.abstractmethod
    async def connect(self, record: WorkerRecord, identity: str) -> Claim:
        """Claim `record.worker_id` for `identity`, before the record enters the registry."""

    @abc.abstractmethod
    async def disconnected(self, worker_id: str, identity: str, *, removed: bool) -> None:
        """A connection ended; `removed`: it was the worker's current one, now gone."""

    @abc.abstractmethod
    async def prepare(self, lookups: Lookups, sessions: PunchSessionTable) -> RecordLookup:
        """Fetch what a message needs from elsewhere: the session (into `sessions`) and
        the records of the workers it names (returned, local ones first)."""

    @abc.abstractmethod
    async def save(self, record: WorkerRecord) -> None:
        """Publish a record the handler changed."""

    @abc.abstractmethod
    async def save_session(self, session: PunchSessionRecord) -> None:
        """Publish a session the handler created."""

    @abc.abstractmethod
    async def page(self, limit: int | None, cursor: str | None) -> Page:
        """Every worker's record in worker_id order, a page at a time."""

    @abc.abstractmethod
    async def route(self, worker_id: str, frame: str) -> bool:
        """Send a frame to a worker connected to another instance; False if none has it."""

    async def admit_key(self, worker_id: str, public_key: str | None) -> bool:
        """May a connection proven to hold `public_key` (None: keyless) take `worker_id`?
        A key claims a free id; see `identity.KeyBindings`."""
        return self.bindings.admit(worker_id, public_key, self.clock())

    async def key_left(self, worker_id: str, public_key: str) -> None:
        """The current connection of `public_key` for `worker_id` ended."""
        self.bindings.left(worker_id, public_key, self.clock())

    async def release_key(self, worker_id: str) -> str | None:
        """An operator releases the binding; the key it held, or None if there was none."""
        return self.bindings.release(worker_id, self.clock())

    async def publish_feed(self, payload: bytes) -> bool:
        """Send a batch of fleet changes to every instance (this one too, through
        `StoreEvents.feed`); False when there is no one else to tell, or no way to."""
        return False


class MemoryStore(RegistryStore):
    """This process only: the registry is the whole store, nothing is published."""

    backend = "memory"

    async def connect(self, record: WorkerRecord, identity: str) -> Claim:
        return Claim(accepted=self.ownership.claim(record.worker_id, identity, self.clock()))

    async def disconnected(self, worker_id: str, identity: str, *, removed: bool) -> None:
        self.ownership.claim(worker_id, identity, self.clock())  # renew the binding

    async def prepare(self, lookups: Lookups, sessions: PunchSessionTable) -> RecordLookup:
        return self.registry

    async def save(self, record: WorkerRecord) -> None:
        return None

    async def save_session(self, session: PunchSessionRecord) -> None:
        return None

    async def page(self, limit: int | None, cursor: str | None) -> Page:
        return self.registry.page(limit=limit, cursor=cursor)

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
        "tags": list(record.tags) or None,  # another instance applies the policy to them
        "pk": record.public_key,
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
            tags=tuple(str(tag) for tag in fields.get("tags", ())),
            public_key=fields.get("pk"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# --- Redis key names and the Lua scripts -------------------------------------------------

# What follows the prefix in each kind of key; see the module docstring.
DEFAULT_KEY_PREFIX = "holepunch:"
KEY_NAMESPACES = {
    "worker": "w:",
    "ids": "ids",
    "owner": "own:",
    "key": "key:",
    "held": "i:",
    "instances": "instances",
    "session": "s:",
    "worker_sessions": "ws:",
    "channel": "ch:",
    "feed": "feed",
}
# Written into Lua source as a literal: nothing that could end or escape the string.
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.:{}-]*")


class RedisKeys:
    """Every Redis key name, from one prefix: for Python, and for the Lua scripts as the
    table `K` (`K.worker .. worker_id`)."""

    def __init__(self, prefix: str) -> None:
        if not PREFIX_PATTERN.fullmatch(prefix):
            raise ValueError(f"Redis key prefix {prefix!r}: letters, digits and _.:{{}}- only")
        self.namespaces = {name: prefix + suffix for name, suffix in KEY_NAMESPACES.items()}
        self.ids = self.namespaces["ids"]
        self.instances = self.namespaces["instances"]
        self.feed = self.namespaces["feed"]  # pub/sub channel: the fleet page's changes

    def worker(self, worker_id: str) -> str:
        return self.namespaces["worker"] + worker_id

    def session(self, session_id: str) -> str:
        return self.namespaces["session"] + session_id

    def worker_sessions(self, worker_id: str) -> str:
        return self.namespaces["worker_sessions"] + worker_id

    def channel(self, instance_id: str) -> str:
        return self.namespaces["channel"] + instance_id

    def lua_prelude(self) -> str:
        fields = ", ".join(f"{name} = '{value}'" for name, value in self.namespaces.items())
        return f"local K = {{{fields}}}\n"


def _read_lua_scripts() -> dict[str, str]:
    folder = importlib.resources.files(__package__).joinpath("lua")
    return {
        entry.name.removesuffix(".lua"): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".lua")
    }


# Read once, when the module is imported; each script is one round trip and atomic.
LUA_SCRIPTS = _read_lua_scripts()


def _instance_id() -> str:
    # Cloud Run names neither the instance nor the container; the host name and a random
    # suffix are unique enough and readable in logs.
    return f"{socket.gethostname()[:32]}-{os.urandom(4).hex()}"


def _ms(seconds: float) -> str:
    return str(max(1, int(seconds * 1000)))


class RedisStore(RegistryStore):
    """The registry shared through Redis (redis.asyncio): see the module docstring."""

    backend = "redis"

    def __init__(
        self,
        registry: Registry,
        url: str,
        *,
        ttl_sec: float,
        heartbeat_sec: float | None = None,
        prefix: str = DEFAULT_KEY_PREFIX,
        instance_id: str | None = None,
        ownership: WorkerOwnership | None = None,
        clock: Callable[[], float] = time.time,
        bindings: KeyBindings | None = None,
    ) -> None:
        super().__init__(registry, ownership or WorkerOwnership(), clock, bindings)
        # Imported here: a memory-only deployment never loads the client.
        import redis.asyncio as redis_asyncio
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.ttl_sec = ttl_sec
        self.heartbeat_sec = heartbeat_sec if heartbeat_sec is not None else ttl_sec / 3
        self.keys = RedisKeys(prefix)
        self.instance_id = instance_id or _instance_id()
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
        prelude = self.keys.lua_prelude()
        self._scripts = {
            name: self._client.register_script(prelude + source)
            for name, source in LUA_SCRIPTS.items()
        }
        self._connect = self._scripts["connect"]
        self._save = self._scripts["save"]
        self._remove = self._scripts["remove"]
        self._heartbeat = self._scripts["heartbeat"]
        self._route = self._scripts["route"]
        self._forget = self._scripts["forget_instance"]
        self._page = self._scripts["page"]
        self._key_binding = self._scripts["key_binding"]
        self._channel = self.keys.channel(self.instance_id)
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
                RendezvousEvent.REGISTRY_UNAVAILABLE,
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
                await self._call("forget", self._forget, [self.instance_id])
        with contextlib.suppress(Exception):
            await self._client.aclose()

    # --- the registry ------------------------------------------------------------------

    async def connect(self, record: WorkerRecord, identity: str) -> Claim:
        self._identities[record.worker_id] = identity
        self._pending_removals.discard(record.worker_id)
        if self._available:
            try:
                return await self._claim(record, identity)
            except Exception as error:  # redis errors, timeouts, OSError
                self._failed(error)
        # Redis is away: this process's own table decides; claimed in Redis on recovery.
        accepted = self.ownership.claim(record.worker_id, identity, self.clock())
        return Claim(accepted=accepted, checked=False)

    async def disconnected(self, worker_id: str, identity: str, *, removed: bool) -> None:
        if removed:
            await self.remove(worker_id)

    def _claim_args(self, record: WorkerRecord, identity: str, republish: bool) -> list[Any]:
        return [
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
                [worker_id, self.instance_id, _ms(OWNERSHIP_TTL_SEC)],
            )
        except Exception as error:
            self._pending_removals.add(worker_id)
            self._failed(error)

    async def prepare(self, lookups: Lookups, sessions: PunchSessionTable) -> RecordLookup:
        if lookups.session_id is not None and sessions.get(lookups.session_id) is None:
            session = await self.load_session(lookups.session_id)
            if session is not None:
                sessions.adopt(session)
        fetched = [
            await self.lookup(worker_id)
            for worker_id in lookups.worker_ids
            if self.registry.get(worker_id) is None
        ]
        if not fetched:
            return self.registry
        return _LocalFirst(self.registry, fetched)

    async def lookup(self, worker_id: str) -> WorkerRecord | None:
        local = self.registry.get(worker_id)
        if local is not None or not self._available:
            return local
        try:
            self.round_trips["lookup"] += 1
            text = await self._client.hget(self.keys.worker(worker_id), "rec")
        except Exception as error:
            self._failed(error)
            return None
        return decode_record(worker_id, text)

    async def page(self, limit: int | None, cursor: str | None) -> Page:
        if not self._available:
            return self.registry.page(limit=limit, cursor=cursor)
        start = "-" if cursor is None else f"({cursor}"
        try:
            count, ids, texts, more, last = await self._call(
                "page", self._page, [start, limit or 0]
            )
        except Exception as error:
            self._failed(error)
            return self.registry.page(limit=limit, cursor=cursor)
        records = [
            record
            for worker_id, text in zip(ids, texts, strict=True)
            if (record := decode_record(worker_id, text)) is not None
        ]
        if limit is None and cursor is None:
            count = len(records)  # exact, even before the index is swept
        return Page(int(count), records, last if int(more) and last else None)

    # --- worker keys -------------------------------------------------------------------

    async def _binding_call(self, op: str, worker_id: str, public_key: str | None) -> Any:
        return await self._call(
            "key_binding",
            self._key_binding,
            [op, worker_id, public_key or "", _ms(self.bindings.ttl), self.instance_id],
        )

    async def admit_key(self, worker_id: str, public_key: str | None) -> bool:
        if self._available:
            try:
                return int(await self._binding_call("admit", worker_id, public_key)) == 1
            except Exception as error:
                self._failed(error)
        # Redis is away: this process's own table decides (as for the ownership claim).
        return await super().admit_key(worker_id, public_key)

    async def key_left(self, worker_id: str, public_key: str) -> None:
        await super().key_left(worker_id, public_key)
        if not self._available:
            return
        try:
            await self._binding_call("left", worker_id, public_key)
        except Exception as error:
            self._failed(error)

    async def release_key(self, worker_id: str) -> str | None:
        local = await super().release_key(worker_id)
        if not self._available:
            return local
        try:
            released = await self._binding_call("release", worker_id, None)
        except Exception as error:
            self._failed(error)
            return local
        return str(released) or local

    # --- sessions and deliveries -------------------------------------------------------

    async def save_session(self, session: PunchSessionRecord) -> None:
        if not self._available:
            return
        key = self.keys.session(session.session_id)
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
                    pipe.sadd(self.keys.worker_sessions(worker_id), session.session_id)
                    pipe.pexpire(self.keys.worker_sessions(worker_id), ttl)
                await pipe.execute()
        except Exception as error:
            self._failed(error)

    async def load_session(self, session_id: str) -> PunchSessionRecord | None:
        if not self._available:
            return None
        try:
            self.round_trips["load_session"] += 1
            fields = await self._client.hgetall(self.keys.session(session_id))
        except Exception as error:
            self._failed(error)
            return None
        try:
            return PunchSessionRecord(
                session_id=session_id,
                secret=fields["secret"],
                initiator=fields["initiator"],
                responder=fields["responder"],
                created_at=float(fields["created_at"]),
                relay_first=fields.get("relay_first") == "1",
            )
        except (KeyError, ValueError):
            return None

    async def publish_feed(self, payload: bytes) -> bool:
        """One PUBLISH per batch to the channel every instance with the page subscribes to."""
        if not self._available:
            return False
        try:
            self.round_trips["feed"] += 1
            await self._client.publish(self.keys.feed, payload)
        except Exception as error:
            self._failed(error)
            return False
        return True

    async def route(self, worker_id: str, frame: str) -> bool:
        """Publish a frame for a worker connected to another instance."""
        if not self._available:
            return False
        message = json.dumps({"op": "deliver", "w": worker_id, "f": frame})
        try:
            instance = await self._call("route", self._route, [worker_id, message])
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
            [self.instance_id, _ms(self.ttl_sec), *self._local_ids()],
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
            for script in self._scripts.values():
                pipe.script_load(script.script)
            await pipe.execute()
        # Entries of workers that left while Redis was away, then everyone still here.
        for worker_id in list(self._pending_removals):
            if self.registry.get(worker_id) is None:
                await self._call(
                    "remove",
                    self._remove,
                    [worker_id, self.instance_id, _ms(OWNERSHIP_TTL_SEC)],
                )
            self._pending_removals.discard(worker_id)
        await self._call("heartbeat", self._heartbeat, [self.instance_id, _ms(self.ttl_sec)])
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
                RendezvousEvent.REGISTRY_RECOVERED,
                f"Shared registry back: {published} local workers published again",
                instance_id=self.instance_id,
                workers=published,
                down_sec=None if down_for is None else round(down_for, 3),
            )

    async def _subscribe(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                feed = None if self._events is None else self._events.feed
                channels = [self._channel] if feed is None else [self._channel, self.keys.feed]
                await pubsub.subscribe(*channels)
                self._subscribed = True
                self._note_ready()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    data = message.get("data")
                    if feed is not None and message.get("channel") == self.keys.feed:
                        if isinstance(data, str):
                            feed(data)
                    else:
                        await self._dispatch(data)
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
                RendezvousEvent.REGISTRY_MESSAGE_INVALID,
                "Ignored an unreadable message on this instance's channel",
                level=logging.WARNING,
                reason=str(data)[:200],
            )


class _LocalFirst:
    """Records for the handler: the local registry first, then records fetched from Redis."""

    def __init__(self, registry: Registry, fetched: list[WorkerRecord | None]) -> None:
        self._registry = registry
        self._fetched = {record.worker_id: record for record in fetched if record is not None}

    def get(self, worker_id: str, /) -> WorkerRecord | None:
        return self._registry.get(worker_id) or self._fetched.get(worker_id)


def build_store(
    registry: Registry,
    url: str | None,
    ttl_sec: float,
    ownership: WorkerOwnership,
    clock: Callable[[], float] = time.time,
    bindings: KeyBindings | None = None,
) -> RegistryStore:
    """`url` None: the in-memory store; redis://...: the store shared through Redis."""
    if url is None:
        return MemoryStore(registry, ownership, clock, bindings)
    return RedisStore(
        registry, url, ttl_sec=ttl_sec, ownership=ownership, clock=clock, bindings=bindings
    )
