"""Starlette glue: HTTP routes and the worker WebSocket, moving frames to `handler`.

Each frame is decoded once and handled by the pure handler; its `Outcome` is then applied
by one driver (`Rendezvous.handle` and `Rendezvous.deliver`) to whichever store is
configured, the same way for every backend.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from holepunch_logging import RendezvousEvent, log_event
from holepunch_protocol import (
    PUBLIC_KEY_HEADER,
    AuthProof,
    ClientMessage,
    CloseCode,
    ErrorCode,
    ErrorMessage,
    ListPeers,
    ProtocolError,
    RelayDatagram,
    decode_client_message,
    encode_message,
    iso_timestamp,
    parse_tags,
    validate_worker_id,
)
from holepunch_protocol.tags import TAGS_QUERY_PARAMETER
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from holepunch_rendezvous.auth import (
    AuthError,
    AuthMode,
    WorkerOwnership,
    authenticate,
    is_admin,
)
from holepunch_rendezvous.budgets import TokenBucket, charged_to_control
from holepunch_rendezvous.config import RendezvousConfig
from holepunch_rendezvous.handler import (
    NO_LOOKUPS,
    Event,
    Lookups,
    Outcome,
    decode_frame,
    handle_binary_frame,
    handle_message,
    introduce,
    lookups_for,
)
from holepunch_rendezvous.id_tokens import CertificateCache, accepted_audiences
from holepunch_rendezvous.identity import (
    IdentityRefusal,
    KeyBindings,
    VerifiedKey,
    announced_key,
    invalid_proof,
    keyless_refusal,
    mismatch_refusal,
    new_challenge,
    verify_proof,
)
from holepunch_rendezvous.policy import policy_for
from holepunch_rendezvous.punch_sessions import (
    PunchSessionRecord,
    PunchSessionTable,
    RelayLimits,
)
from holepunch_rendezvous.registry import Page, Registry, WorkerRecord
from holepunch_rendezvous.slow_clients import SlowClientKind, SlowClients, receive_first_frame
from holepunch_rendezvous.store import Claim, RegistryStore, StoreEvents, build_store
from holepunch_rendezvous.ui import UI_ROUTES, LiveFeed
from holepunch_rendezvous.ui.changes import changes_of, worker_joined, worker_left
from holepunch_rendezvous.ui.login import BROWSER_REALM, browser_login

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_REPLACED", "Rendezvous", "build_asgi_app", "create_app"]

logger = logging.getLogger("holepunch.rendezvous")

CLOSE_REPLACED = CloseCode.REPLACED
CLOSE_REPLACED_REASON = "replaced by a newer connection for this worker_id"
CLOSE_POLICY_VIOLATION = CloseCode.POLICY_VIOLATION
CLOSE_GOING_AWAY = CloseCode.GOING_AWAY
MAX_LIST_LIMIT = 1000
LIST_LIMIT_PATTERN = re.compile(r"[0-9]{1,4}")


class FastJSONResponse(JSONResponse):
    """JSONResponse with the same compact UTF-8 body, rendered by orjson (~8x faster on
    the full worker list)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _log(event: Event) -> None:
    log_event(logger, event.name, event.message, level=event.level, **event.fields)


class Rendezvous:
    """Live state of one rendezvous process: the registry and each connection's socket.

    `registry` holds the workers connected to this process; `store` is where the registry
    is read by everyone (the same registry in memory, or Redis shared by every instance).
    The app reaches the store only through `RegistryStore`'s methods, whatever its backend.
    """

    def __init__(
        self, config: RendezvousConfig | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config or RendezvousConfig()
        self.registry = Registry()
        self.ownership = WorkerOwnership()
        self.store: RegistryStore = build_store(
            self.registry,
            self.config.registry_url,
            self.config.registry_ttl_sec,
            self.ownership,
            clock,
            KeyBindings(self.config.key_binding_ttl_sec),
        )
        self.sessions = PunchSessionTable(
            RelayLimits(self.config.relay_datagrams_per_sec, self.config.relay_bytes_per_sec),
            caps=self.config.caps,
        )
        self.policy = policy_for(
            self.config.auth_mode, self.config.introduction_policy, self.config.allowed_worker_tags
        )
        # Introductions refused, by error code (not_allowed: outside the policy).
        self.introductions_refused: collections.Counter[str] = collections.Counter()
        self.connections_per_address: collections.Counter[str] = collections.Counter()
        self.connections: dict[int, WebSocket] = {}
        self.clock = clock
        self._connection_ids = itertools.count(1)
        self._background: set[asyncio.Task[None]] = set()
        self.id_token_certificates = (
            CertificateCache(self.config.iam_certs_url)
            if self.config.auth_mode is AuthMode.IAM
            else None
        )
        self.slow_clients = SlowClients()
        # The fleet page's live feed: fed only while the page is served (DEBUG_ENDPOINTS).
        self.feed = LiveFeed(enabled=self.config.debug_endpoints)

    def next_connection_id(self) -> int:
        return next(self._connection_ids)

    async def start(self) -> None:
        if self.id_token_certificates is not None:  # fetched ahead of the first worker
            self._run_in_background(self._fetch_certificates(self.id_token_certificates))
        if self.feed.enabled:
            self.feed.share_through(self.store.publish_feed)
        await self.store.start(
            StoreEvents(
                deliver=self._deliver_frame,
                close=self._close_replaced,
                refuse=self._refuse_taken,
                feed=self.feed.receive if self.feed.enabled else None,
            )
        )

    async def stop(self) -> None:
        await self.feed.drain()
        await self.store.stop()

    def _websocket_of(self, worker_id: str) -> tuple[WorkerRecord, WebSocket] | None:
        record = self.registry.get(worker_id)
        websocket = None if record is None else self.connections.get(record.connection_id)
        if record is None or websocket is None:
            return None
        return record, websocket

    async def _deliver_frame(self, worker_id: str, frame: str) -> None:
        """A frame another instance routed to a worker connected here."""
        found = self._websocket_of(worker_id)
        if found is None or found[1].application_state is not WebSocketState.CONNECTED:
            return
        with contextlib.suppress(RuntimeError, OSError):
            await found[1].send_text(frame)

    async def _close_replaced(self, worker_id: str, connection_id: int) -> None:
        """A newer connection for this worker_id registered on another instance."""
        found = self._websocket_of(worker_id)
        if found is None or found[0].connection_id != connection_id:
            return
        log_event(
            logger,
            RendezvousEvent.WORKER_REPLACED,
            f"Worker {worker_id}: a connection on another instance replaced "
            f"connection {connection_id}",
            level=logging.WARNING,
            worker_id=worker_id,
            replaced_connection_id=connection_id,
            reason=CLOSE_REPLACED_REASON,
        )
        self.close_in_background(found[1], CLOSE_REPLACED, CLOSE_REPLACED_REASON)

    async def _refuse_taken(self, worker_id: str) -> None:
        """Redis came back naming another identity as this worker_id's owner."""
        found = self._websocket_of(worker_id)
        if found is not None:
            self.close_in_background(
                found[1], CloseCode.FORBIDDEN, "worker_id belongs to another identity"
            )

    def close_in_background(self, websocket: WebSocket, code: int, reason: str) -> None:
        self._run_in_background(_close_quietly(websocket, code, reason))

    def _run_in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _fetch_certificates(cache: CertificateCache) -> None:
        await cache.certificates()  # a failure is logged there and retried on demand

    async def close_all(self, code: int, reason: str) -> None:
        self.feed.close()  # the fleet page's streams end too
        sockets = list(self.connections.values())
        await asyncio.gather(*(_close_quietly(ws, code, reason) for ws in sockets))

    async def handle(self, worker_id: str, connection_id: int, message: ClientMessage) -> Outcome:
        """The driver: fetch what the message needs from the store, handle it, and publish
        what it changed (before the reply, so an ack means every instance sees it)."""
        lookups = lookups_for(self.registry, worker_id, connection_id, message)
        peers = (
            self.registry
            if lookups is NO_LOOKUPS
            else await self.store.prepare(lookups, self.sessions)
        )
        candidates = None
        if isinstance(message, ListPeers) and self.registry.is_current(worker_id, connection_id):
            candidates = await self.store.page(message.limit, message.cursor)
        outcome = handle_message(
            self.registry,
            self.sessions,
            worker_id,
            connection_id,
            message,
            self.clock(),
            peers,
            self.policy,
            candidates,
        )
        if (
            outcome.event is not None
            and outcome.event.name is RendezvousEvent.INTRODUCTION_REJECTED
        ):
            self.introductions_refused[outcome.event.fields["code"]] += 1
        await self.publish(outcome)
        return outcome

    async def publish(self, outcome: Outcome) -> None:
        if self.feed.enabled:  # nothing is built for a page nobody can open
            self.feed.note(changes_of(outcome, self.clock()))
        if outcome.changed_record is not None:
            await self.store.save(outcome.changed_record)
        if outcome.created_session is not None:
            await self.store.save_session(outcome.created_session)

    async def deliver(self, outcome: Outcome) -> None:
        """Send each delivery to its worker's current connection, here or (through the
        store) on another instance; a worker with no connection left gets nothing."""
        for delivery in outcome.deliveries:
            frame = encode_message(delivery.message)
            record = self.registry.get(delivery.worker_id)
            if record is None:
                await self.store.route(delivery.worker_id, frame)
                continue
            websocket = self.connections.get(record.connection_id)
            if websocket is None or websocket.application_state is not WebSocketState.CONNECTED:
                continue
            with contextlib.suppress(RuntimeError, OSError):  # it is closing: nothing to do
                await websocket.send_text(frame)

    def listing(self, page: Page, *, paged: bool) -> dict[str, Any]:
        """The `/debug/list_workers` body for a page of records. A record not in this
        process's registry is connected to another instance (its connection is open there).
        `paged`: the request asked for a page, so the body says where the next one starts."""
        registry = self.registry
        workers = {}
        for record in page.records:
            local = registry.get(record.worker_id)
            workers[record.worker_id] = (
                self.describe(local) if local is not None else self.describe(record, remote=True)
            )
        body: dict[str, Any] = {"connected_workers_count": page.count, "workers": workers}
        if paged:
            body["next_cursor"] = page.next_cursor
        return body

    def describe(self, record: WorkerRecord, *, remote: bool = False) -> dict[str, Any]:
        """`remote`: a record another instance published (its connection is open there)."""
        if remote:
            state = WebSocketState.CONNECTED
        else:
            websocket = self.connections.get(record.connection_id)
            state = websocket.client_state if websocket is not None else WebSocketState.DISCONNECTED
        endpoint = record.udp_endpoint
        connected_since, endpoint_updated_at = record.timestamps_iso()
        return {
            # Fields of the original design, unchanged.
            "websocket_observed_ip": record.observed_ip,
            "websocket_observed_port": record.observed_port,
            "stun_reported_udp_ip": endpoint.ip if endpoint else None,
            "stun_reported_udp_port": endpoint.port if endpoint else None,
            "websocket_connected": state is WebSocketState.CONNECTED,
            "websocket_raw_state": state.value,
            # Added by holepunch.
            "http_reported_public_ip": record.reported_public_ip,
            "nat_mapping": endpoint.mapping.value if endpoint and endpoint.mapping else None,
            "local_udp_port": endpoint.local_port if endpoint else None,
            "connected_since": connected_since,
            "udp_endpoint_updated_at": endpoint_updated_at,
            "udp_endpoint_update_count": record.udp_update_count,
            "tags": list(record.tags),
            "public_key": record.public_key,
            "key_fingerprint": None
            if record.public_key is None
            else VerifiedKey(record.public_key).fingerprint,
            "keyless": record.public_key is None,
        }


async def _close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state is not WebSocketState.CONNECTED:
        return
    with contextlib.suppress(RuntimeError, OSError):  # already closing or gone
        await websocket.close(code=code, reason=reason)


def _rendezvous(connection: Request | WebSocket) -> Rendezvous:
    rendezvous: Rendezvous = connection.app.state.rendezvous
    return rendezvous


DEBUG_ENDPOINTS = [
    "/debug/registry",
    "/debug/list_workers?limit=&cursor=",
    "/debug/sessions",
    "/ui",
]


async def index(request: Request) -> Response:
    """What is served; the debug endpoints and the fleet page only while they are on."""
    debug = _rendezvous(request).config.debug_endpoints
    return JSONResponse(
        {
            "service": "holepunch-rendezvous",
            "message": "Rendezvous Service is running. "
            "Connect via WebSocket at /ws/register/{worker_id}",
            "websocket": "/ws/register/{worker_id}",
            "endpoints": [
                "/healthz",
                "/livez",
                *(DEBUG_ENDPOINTS if debug else []),
                "POST /admin/introduce",
                "DELETE /admin/bindings/{worker_id}",
            ],
        }
    )


async def healthz(request: Request) -> Response:
    """Readiness: with the shared registry, 503 while Redis is unreachable."""
    store = _rendezvous(request).store
    if not store.ready:
        return JSONResponse(
            {"status": "unavailable", "reason": store.not_ready_reason}, status_code=503
        )
    return JSONResponse({"status": "ok"})


async def livez(request: Request) -> Response:
    """Liveness only: the process answers (never depends on Redis)."""
    return JSONResponse({"status": "ok"})


async def registry_status(request: Request) -> Response:
    rendezvous = _rendezvous(request)
    return JSONResponse(
        {
            **rendezvous.store.describe(),
            "local_workers": len(rendezvous.registry),
            "introduction_policy": rendezvous.policy.description,
            "introductions_refused": dict(rendezvous.introductions_refused),
            "slow_clients_closed": rendezvous.slow_clients.describe(),
            "fleet_page": rendezvous.feed.describe(),
        }
    )


def _operator_only(
    handler: Callable[[Request], Awaitable[Response]], *, debug: bool, challenge: str = "Bearer"
) -> Callable[[Request], Awaitable[Response]]:
    """/debug/* (and /ui) needs DEBUG_ENDPOINTS=1; both /debug/* and /admin/* need
    ADMIN_TOKEN as a bearer token, or as the password of a browser's Basic login
    (ui/login.py), except under AUTH_MODE=none. `challenge`: the 401's WWW-Authenticate
    (the page's routes ask the browser for its login; the rest name the bearer)."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        config = _rendezvous(request).config
        if debug and not config.debug_endpoints:
            return JSONResponse(
                {"error": "not_found", "detail": "debug endpoints are off (DEBUG_ENDPOINTS=1)"},
                status_code=404,
            )
        if not is_admin(
            config.auth_mode, request.headers, config.admin_token
        ) and not browser_login(request.headers, config.admin_token, request.method):
            detail = (
                "send Authorization: Bearer <ADMIN_TOKEN>"
                if config.admin_token
                else "ADMIN_TOKEN is not set: operator endpoints are closed"
            )
            return JSONResponse(
                {"error": "unauthenticated", "detail": detail},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
        return await handler(request)

    return guarded


def _bad_request(detail: str) -> Response:
    return JSONResponse({"error": "bad_request", "detail": detail}, status_code=400)


async def list_workers(request: Request) -> Response:
    rendezvous = _rendezvous(request)
    raw_limit = request.query_params.get("limit")
    limit: int | None = None
    if raw_limit is not None:
        if not LIST_LIMIT_PATTERN.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIST_LIMIT:
            return _bad_request(f"limit must be an integer in 1..{MAX_LIST_LIMIT}")
        limit = int(raw_limit)
    cursor = request.query_params.get("cursor") or None
    page = await rendezvous.store.page(limit, cursor)
    return FastJSONResponse(rendezvous.listing(page, paged=limit is not None or cursor is not None))


async def _refuse(
    websocket: WebSocket, worker_id: str, error: ProtocolError, close_code: int, reason: str
) -> None:
    """Tell the client why in an error frame, then close with a code that says it too."""
    client = websocket.client
    log_event(
        logger,
        RendezvousEvent.CONNECTION_REJECTED,
        f"Rejected connection for {worker_id[:80]}: {error.detail}",
        level=logging.WARNING,
        code=error.code.value,
        reason=error.detail,
        worker_id=worker_id[:80],
        observed_ip=client.host if client else None,
    )
    await websocket.send_text(encode_message(ErrorMessage.from_error(error)))
    await websocket.close(code=close_code, reason=reason)


@dataclass(frozen=True, slots=True)
class _Connection:
    """A worker's WebSocket connection, admitted: its record is in the registry."""

    websocket: WebSocket
    worker_id: str
    connection_id: int
    identity: str
    address_key: str
    public_key: str | None = None  # None: a keyless worker


async def register_worker(websocket: WebSocket) -> None:
    """A worker's connection: admit it, serve its frames, and clean up exactly once."""
    rendezvous = _rendezvous(websocket)
    await websocket.accept()
    connection = await _admit(rendezvous, websocket)
    if connection is None:
        return
    close_code: int | None = None
    close_reason: str | None = None
    try:
        close_code, close_reason = await _receive_loop(rendezvous, connection)
    except (RuntimeError, OSError) as error:
        close_reason = f"connection lost: {error}"
    finally:
        await _clean_up(rendezvous, connection, close_code, close_reason)


async def _admit(rendezvous: Rendezvous, websocket: WebSocket) -> _Connection | None:
    """Check the worker_id, the caller and its address, and claim the id; None (and the
    socket closed with the reason) if any of them says no."""
    config = rendezvous.config
    worker_id: str = websocket.path_params["worker_id"]
    try:
        validate_worker_id(worker_id)
    except ProtocolError as error:
        await _refuse(websocket, worker_id, error, CLOSE_POLICY_VIOLATION, "invalid worker_id")
        return None
    try:
        certificates = rendezvous.id_token_certificates
        verifier = (
            None
            if certificates is None
            else await certificates.verifier(
                accepted_audiences(config.iam_audiences, websocket.headers.get("host"))
            )
        )
        identity = authenticate(
            config.auth_mode, websocket.headers, config.rendezvous_token, verifier
        )
    except AuthError as error:
        await _refuse(
            websocket,
            worker_id,
            ProtocolError(ErrorCode.UNAUTHENTICATED, error.detail),
            CloseCode.UNAUTHENTICATED,
            error.close_reason,
        )
        return None
    tags = await _declared_tags(rendezvous, websocket, worker_id)
    if tags is None:
        return None
    client = websocket.client
    observed_ip, observed_port = (client.host, client.port) if client else (None, None)
    address_key = observed_ip or "unknown"
    if rendezvous.connections_per_address[address_key] >= config.max_connections_per_address:
        await _refuse(
            websocket,
            worker_id,
            ProtocolError(
                ErrorCode.TOO_MANY_CONNECTIONS,
                f"at most {config.max_connections_per_address} connections per client address",
            ),
            CloseCode.TOO_MANY_CONNECTIONS,
            "too many connections from this address",
        )
        return None
    public_key = await _prove_key(rendezvous, websocket, worker_id)
    if isinstance(public_key, IdentityRefusal):
        refusal = public_key
        await _refuse(websocket, worker_id, refusal.error, refusal.close_code, refusal.reason)
        return None
    if public_key is _ClientLeft.LEFT:
        return None
    if not await rendezvous.store.admit_key(worker_id, public_key):
        refusal = mismatch_refusal()
        await _refuse(websocket, worker_id, refusal.error, refusal.close_code, refusal.reason)
        return None
    connection_id = rendezvous.next_connection_id()
    record = WorkerRecord(
        worker_id,
        connection_id,
        observed_ip,
        observed_port,
        rendezvous.clock(),
        tags=tags,
        public_key=public_key,
    )
    claim = await rendezvous.store.connect(record, identity)
    if not claim.accepted:
        await _refuse(
            websocket,
            worker_id,
            ProtocolError(
                ErrorCode.WORKER_ID_TAKEN, "this worker_id is registered to another identity"
            ),
            CloseCode.FORBIDDEN,
            "worker_id belongs to another identity",
        )
        return None
    return _register(rendezvous, websocket, record, identity, claim, address_key)


async def _declared_tags(
    rendezvous: Rendezvous, websocket: WebSocket, worker_id: str
) -> tuple[str, ...] | None:
    """The tags in the registration's query (none: untagged, as workers of the original
    design); None (and the socket closed with the reason) for a malformed tag or one the
    operator does not allow: refused rather than dropped, so a misconfigured worker says
    so at once instead of silently missing from every introduction."""
    try:
        tags = parse_tags(websocket.query_params.get(TAGS_QUERY_PARAMETER))
    except ValueError as error:
        await _refuse(
            websocket,
            worker_id,
            ProtocolError(ErrorCode.INVALID_FIELD, f"tags: {error}"),
            CLOSE_POLICY_VIOLATION,
            "invalid tags",
        )
        return None
    undeclarable = rendezvous.policy.undeclarable(tags)
    if undeclarable:
        await _refuse(
            websocket,
            worker_id,
            ProtocolError(
                ErrorCode.TAG_NOT_ALLOWED,
                f"tags not allowed here: {', '.join(undeclarable)} (ALLOWED_WORKER_TAGS)",
            ),
            CloseCode.TAG_NOT_ALLOWED,
            "tag not allowed",
        )
        return None
    return tags


class _ClientLeft(enum.Enum):
    """The client closed the connection before it answered the challenge."""

    LEFT = "left"


async def _prove_key(
    rendezvous: Rendezvous, websocket: WebSocket, worker_id: str
) -> str | IdentityRefusal | _ClientLeft | None:
    """The key the worker proved it holds (its challenge answered); None for a keyless
    worker where they are allowed; `_ClientLeft.LEFT` if it left first. Nothing else it sends is
    read before the proof, and it is not in the registry until then."""
    announced = announced_key(websocket.headers.get(PUBLIC_KEY_HEADER))
    if announced is None:
        return None if rendezvous.config.keyless_allowed else keyless_refusal()
    if isinstance(announced, IdentityRefusal):
        return announced
    challenge = new_challenge(worker_id, announced)
    await websocket.send_text(encode_message(challenge.message))
    # The proof is the first message: FIRST_MESSAGE_TIMEOUT_SEC bounds it, as it bounds a
    # keyless worker's first frame in _receive_loop.
    frame = await receive_first_frame(websocket, rendezvous.config.first_message_timeout_sec)
    if frame is None:
        timeout = _count_silent(rendezvous, websocket)
        return invalid_proof(f"no auth_proof within {timeout:g} s")
    if frame["type"] == "websocket.disconnect":
        return _ClientLeft.LEFT
    try:
        proof = decode_client_message(frame.get("text") or "")
    except ProtocolError as error:
        return invalid_proof(f"the answer to auth_challenge is invalid: {error.detail}")
    if not isinstance(proof, AuthProof):
        return invalid_proof(f"expected auth_proof before any other message, got {proof.TYPE}")
    verified = verify_proof(challenge, proof)
    return verified if isinstance(verified, IdentityRefusal) else verified.public_key


def _register(
    rendezvous: Rendezvous,
    websocket: WebSocket,
    record: WorkerRecord,
    identity: str,
    claim: Claim,
    address_key: str,
) -> _Connection:
    """Make an admitted connection the worker's current one, and close the one it replaced
    here (one replaced on another instance is closed there)."""
    worker_id, connection_id = record.worker_id, record.connection_id
    observed_ip, observed_port = record.observed_ip, record.observed_port
    registry = rendezvous.registry
    rendezvous.connections_per_address[address_key] += 1
    replaced = registry.add(record)
    rendezvous.connections[connection_id] = websocket
    if rendezvous.feed.enabled:
        rendezvous.feed.note([worker_joined(record, rendezvous.clock())])
    log_event(
        logger,
        RendezvousEvent.WORKER_CONNECTED,
        f"Worker {worker_id} connected from {observed_ip}:{observed_port}",
        worker_id=worker_id,
        observed_ip=observed_ip,
        observed_port=observed_port,
        connection_id=connection_id,
        identity=identity,
        tags=list(record.tags),
        workers=len(registry),
        key_fingerprint=None
        if record.public_key is None
        else VerifiedKey(record.public_key).fingerprint,
        keyless=record.public_key is None,
    )
    if replaced is not None:
        log_event(
            logger,
            RendezvousEvent.WORKER_REPLACED,
            f"Worker {worker_id}: a new connection replaced connection {replaced.connection_id}",
            level=logging.WARNING,
            worker_id=worker_id,
            connection_id=connection_id,
            replaced_connection_id=replaced.connection_id,
            replaced_observed_ip=replaced.observed_ip,
            replaced_observed_port=replaced.observed_port,
            reason=CLOSE_REPLACED_REASON,
        )
        old_websocket = rendezvous.connections.get(replaced.connection_id)
        if old_websocket is not None:
            rendezvous.close_in_background(old_websocket, CLOSE_REPLACED, CLOSE_REPLACED_REASON)
    elif claim.replaced_instance is not None:
        # The old instance closes it (4409) when the store passes it the message.
        log_event(
            logger,
            RendezvousEvent.WORKER_REPLACED,
            f"Worker {worker_id}: this connection replaced connection "
            f"{claim.replaced_connection_id} on instance {claim.replaced_instance}",
            level=logging.WARNING,
            worker_id=worker_id,
            connection_id=connection_id,
            replaced_connection_id=claim.replaced_connection_id,
            replaced_instance_id=claim.replaced_instance,
            reason=CLOSE_REPLACED_REASON,
        )
    return _Connection(
        websocket, worker_id, connection_id, identity, address_key, record.public_key
    )


async def _receive_loop(
    rendezvous: Rendezvous, connection: _Connection
) -> tuple[int | None, str | None]:
    """Serve the connection's frames until it closes; its close code and reason."""
    config = rendezvous.config
    websocket, worker_id = connection.websocket, connection.worker_id
    budget = TokenBucket(config.max_messages_per_sec, 2 * config.max_messages_per_sec)
    limited = False
    pending: Message | None = None
    if connection.public_key is None:  # a keyed worker's first message was its proof
        pending = await receive_first_frame(websocket, config.first_message_timeout_sec)
        if pending is None:
            return await _close_silent(rendezvous, connection)
    while True:
        message = pending if pending is not None else await websocket.receive()
        pending = None
        if message["type"] == "websocket.disconnect":
            return message.get("code"), message.get("reason") or None
        text = message.get("text")
        decoded = handle_binary_frame(worker_id) if text is None else decode_frame(worker_id, text)
        # A relayed datagram of one of its sessions is paid by the relay budgets (the
        # session's and its initiator's), not by this connection's control budget.
        session = (
            rendezvous.sessions.get(decoded.session_id)
            if isinstance(decoded, RelayDatagram)
            else None
        )
        if charged_to_control(decoded, session, worker_id) and not budget.allow(
            1, rendezvous.clock()
        ):
            if not limited:  # once per episode: a flood must not flood the logs too
                limited = True
                log_event(
                    logger,
                    RendezvousEvent.CONNECTION_RATE_LIMITED,
                    f"Worker {worker_id} exceeds {config.max_messages_per_sec} messages/s",
                    level=logging.WARNING,
                    worker_id=worker_id,
                    reason="message rate limit",
                )
            refusal = ErrorMessage(
                ErrorCode.RATE_LIMITED.value,
                f"more than {config.max_messages_per_sec:g} messages per second",
            )
            await websocket.send_text(encode_message(refusal))
            continue
        limited = False
        if isinstance(decoded, Outcome):
            outcome = decoded
        else:
            outcome = await rendezvous.handle(worker_id, connection.connection_id, decoded)
        if outcome.event is not None:
            _log(outcome.event)
        if outcome.reply is not None:
            if websocket.application_state is not WebSocketState.CONNECTED:
                return None, None  # we are closing it (replaced or shutting down)
            await websocket.send_text(encode_message(outcome.reply))
        if outcome.deliveries:
            await rendezvous.deliver(outcome)


def _count_silent(rendezvous: Rendezvous, websocket: WebSocket) -> float:
    """Count a client that sent nothing within FIRST_MESSAGE_TIMEOUT_SEC; that deadline."""
    timeout = rendezvous.config.first_message_timeout_sec
    client = websocket.client
    rendezvous.slow_clients.record(
        SlowClientKind.FIRST_MESSAGE, client.host if client else None, timeout
    )
    return timeout


async def _close_silent(rendezvous: Rendezvous, connection: _Connection) -> tuple[int, str]:
    """Close a connection that sent no frame within FIRST_MESSAGE_TIMEOUT_SEC; count it."""
    timeout = _count_silent(rendezvous, connection.websocket)
    reason = f"no message within {timeout:g} s"
    await _close_quietly(connection.websocket, CloseCode.FIRST_MESSAGE_TIMEOUT, reason)
    return CloseCode.FIRST_MESSAGE_TIMEOUT, reason


async def _clean_up(
    rendezvous: Rendezvous,
    connection: _Connection,
    close_code: int | None,
    close_reason: str | None,
) -> None:
    """Forget the connection; remove the worker if this was still its connection."""
    worker_id, connection_id = connection.worker_id, connection.connection_id
    counts = rendezvous.connections_per_address
    counts[connection.address_key] -= 1
    if counts[connection.address_key] <= 0:
        del counts[connection.address_key]
    rendezvous.connections.pop(connection_id, None)
    was_current = rendezvous.registry.disconnect(worker_id, connection_id)
    if was_current:
        if rendezvous.feed.enabled:
            rendezvous.feed.note([worker_left(worker_id, rendezvous.clock())])
        rendezvous.sessions.end_sessions_of(worker_id, rendezvous.clock())
        if connection.public_key is not None:
            await rendezvous.store.key_left(worker_id, connection.public_key)
    await rendezvous.store.disconnected(worker_id, connection.identity, removed=was_current)
    log_event(
        logger,
        RendezvousEvent.WORKER_DISCONNECTED,
        f"Worker {worker_id} disconnected (code {close_code})",
        worker_id=worker_id,
        connection_id=connection_id,
        code=close_code,
        reason=close_reason,
        removed_from_registry=was_current,
        workers=len(rendezvous.registry),
    )


def _describe_session(session: PunchSessionRecord) -> dict[str, Any]:
    return {
        "initiator": session.initiator,
        "responder": session.responder,
        "created_at": iso_timestamp(session.created_at),
        "ended_at": iso_timestamp(session.ended_at),
        "relay_first": session.relay_first,
        "relayed_datagrams": session.relayed_datagrams,
        "relayed_bytes": session.relayed_bytes,
        "relay_refused": session.relay_refused,
        "results": {
            worker_id: {key: value for key, value in result.to_fields().items() if key != "type"}
            for worker_id, result in session.results.items()
        },
    }


async def list_sessions(request: Request) -> Response:
    sessions = _rendezvous(request).sessions
    return FastJSONResponse(
        {
            "active_sessions_count": len(sessions),
            "relay_refused_by_initiator": dict(sessions.relay_budgets.refused_by_initiator),
            "active": {s.session_id: _describe_session(s) for s in sessions.active()},
            "ended": {s.session_id: _describe_session(s) for s in sessions.ended()},
        }
    )


async def admin_introduce(request: Request) -> Response:
    """An operator introduces two workers: `{"initiator": id, "responder": id}`. The
    introduction policy is not applied: it bounds what workers may ask, and the operator
    (ADMIN_TOKEN) is the one who writes it."""
    try:
        body = await request.json()
    except ValueError:
        return _bad_request("body must be JSON")
    if not isinstance(body, dict):
        return _bad_request("body must be a JSON object")
    initiator, responder = body.get("initiator"), body.get("responder")
    for name, value in (("initiator", initiator), ("responder", responder)):
        if not isinstance(value, str):
            return _bad_request(f"{name} must be a worker_id string")
    assert isinstance(initiator, str) and isinstance(responder, str)
    rendezvous = _rendezvous(request)
    lookups = Lookups(worker_ids=(initiator, responder))
    peers = await rendezvous.store.prepare(lookups, rendezvous.sessions)
    outcome = introduce(peers, rendezvous.sessions, initiator, responder, rendezvous.clock())
    await rendezvous.publish(outcome)
    if outcome.event is not None:
        _log(outcome.event)
    if isinstance(outcome.reply, ErrorMessage):
        status = 404 if outcome.reply.code == "peer_not_found" else 409
        return JSONResponse(
            {"error": outcome.reply.code, "detail": outcome.reply.detail}, status_code=status
        )
    await rendezvous.deliver(outcome)
    session = outcome.created_session
    return JSONResponse({"session_id": None if session is None else session.session_id})


async def admin_release_binding(request: Request) -> Response:
    """An operator frees a worker_id from its key (the key was lost): the next key proven
    for it claims it. A connection of the old key, if any, is left as it is."""
    worker_id: str = request.path_params["worker_id"]
    released = await _rendezvous(request).store.release_key(worker_id)
    if released is None:
        return JSONResponse(
            {"error": "not_found", "detail": f"worker_id {worker_id[:80]!r} is bound to no key"},
            status_code=404,
        )
    fingerprint = VerifiedKey(released).fingerprint
    log_event(
        logger,
        RendezvousEvent.KEY_BINDING_RELEASED,
        f"Released worker {worker_id} from key {fingerprint}",
        level=logging.WARNING,
        worker_id=worker_id,
        key_fingerprint=fingerprint,
    )
    return JSONResponse(
        {"worker_id": worker_id, "released_public_key": released, "key_fingerprint": fingerprint}
    )


WORKER_SOCKET_ROUTE = WebSocketRoute("/ws/register/{worker_id}", register_worker)


def create_app(rendezvous: Rendezvous | None = None) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/healthz", healthz),
            Route("/livez", livez),
            Route("/debug/registry", _operator_only(registry_status, debug=True)),
            Route("/debug/list_workers", _operator_only(list_workers, debug=True)),
            Route("/debug/sessions", _operator_only(list_sessions, debug=True)),
            Route(
                "/admin/introduce", _operator_only(admin_introduce, debug=False), methods=["POST"]
            ),
            Route(
                "/admin/bindings/{worker_id}",
                _operator_only(admin_release_binding, debug=False),
                methods=["DELETE"],
            ),
            *(
                Route(
                    path,
                    _operator_only(handler, debug=True, challenge=BROWSER_REALM),
                    methods=["GET"],
                )
                for path, handler in UI_ROUTES
            ),
            WORKER_SOCKET_ROUTE,
        ]
    )
    app.state.rendezvous = rendezvous if rendezvous is not None else Rendezvous()
    return app


class WorkerSocketFastPath:
    """Worker WebSockets straight to `register_worker`; everything else to Starlette.

    Starlette would route them to the same function, through its error and exception
    middleware and router, which wrap every frame sent: ~6% of the server's CPU per
    registration in the benchmark. Neither middleware acts on WebSockets here
    (register_worker raises no HTTPException or WebSocketException), so this is the
    same behaviour. The match is Starlette's own.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            match, child_scope = WORKER_SOCKET_ROUTE.matches(scope)
            if match is Match.FULL:
                scope["app"] = self.app
                scope.update(child_scope)
                await register_worker(WebSocket(scope, receive, send))
                return
        await self.app(scope, receive, send)


def build_asgi_app(config: RendezvousConfig, rendezvous: Rendezvous | None = None) -> ASGIApp:
    """The app as served: behind the proxy-header middleware only when configured."""
    app: ASGIApp = WorkerSocketFastPath(create_app(rendezvous))
    if not config.trust_proxy_headers:
        return app
    # uvicorn's middleware is typed with its own ASGI types; both describe the same interface.
    middleware = ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=list(config.trusted_proxies))
    return cast(ASGIApp, middleware)
