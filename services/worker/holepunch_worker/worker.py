"""The worker's I/O: one UDP socket, the STUN refresh loop, the rendezvous WebSocket loop,
the punch sessions' timer and the HTTP listener, all in one event loop.

Decisions live in the pure modules (config, mapping, backoff, signalling, punch); this
module moves their inputs and actions between sockets and timers. Punch sessions outlive
the WebSocket: their direct paths need only the UDP socket; relayed paths pause while
the rendezvous is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

from holepunch_logging import LogThrottle, WorkerEvent, log_event
from holepunch_protocol import (
    LIST_PEERS_DEFAULT_LIMIT,
    LIST_PEERS_MAX_LIMIT,
    MAX_FRAME_BYTES,
    AuthChallenge,
    ConnectRequest,
    ErrorCode,
    ErrorMessage,
    ListPeers,
    MappingBehaviour,
    PeerIntroduction,
    Peers,
    ProtocolError,
    RegisterPublicIp,
    RelayDatagram,
    UdpEndpointAck,
    UpdateUdpEndpoint,
    decode_server_message,
    encode_message,
    iso_timestamp,
    validate_worker_id,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from holepunch_worker.backoff import SessionEnd, after_session, reconnect_delays
from holepunch_worker.config import WorkerConfig
from holepunch_worker.credentials import CredentialsError, RendezvousCredentials
from holepunch_worker.dataplane.interface import (
    DEFAULT_CONNECT_TIMEOUT_SEC,
    ConnectRefused,
    PeerUnavailable,
)
from holepunch_worker.dataplane.plane import QuicDataPlane
from holepunch_worker.dataplane.proxies import start_proxies
from holepunch_worker.http_status import (
    ApiResponse,
    Readiness,
    method_not_allowed,
    start_http_server,
)
from holepunch_worker.introductions import PendingIntroductions, http_status_for
from holepunch_worker.mapping import TransportAddress, carry_forward_mapping
from holepunch_worker.public_ip import fetch_public_ip
from holepunch_worker.punch import (
    Action,
    Delivered,
    EchoReplied,
    LogEvent,
    PunchSessions,
    QuicReceived,
    Report,
    SendRelay,
    SendUdp,
    SessionState,
)
from holepunch_worker.signalling import (
    EndpointReporter,
    ReconnectNeeded,
    SendReport,
    SignallingAction,
)
from holepunch_worker.stun_client import StunRound, discover_mapping
from holepunch_worker.udp import WorkerDatagramProtocol, open_worker_socket

__all__ = ["RendezvousState", "Worker"]

HTTP_BIND_HOST = "0.0.0.0"  # Cloud Run sends requests to $PORT on every interface
WEBSOCKET_OPEN_TIMEOUT_SEC = 10.0
WEBSOCKET_CLOSE_TIMEOUT_SEC = 2.0  # keeps shutdown well inside Cloud Run's 10 s
SHUTDOWN_TIMEOUT_SEC = 8.0
CONNECT_RETRY_SEC = 2.0  # CONNECT_TO peers without a session are asked for again this often
# Relay refusals come one per refused datagram: logged at most this often, all counted.
RELAY_REFUSED_LOG_INTERVAL_SEC = 10.0
# A worker whose STUN servers never answer says so at most this often (each round fails).
NO_ENDPOINT_LOG_INTERVAL_SEC = 60.0


class RendezvousState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING_TO_RECONNECT = "waiting_to_reconnect"
    STOPPED = "stopped"


def _endpoint(address: TransportAddress | None) -> dict[str, Any] | None:
    return None if address is None else {"ip": address[0], "port": address[1]}


def _unanswered_reason(round_: StunRound) -> str:
    """Why a STUN round gave no endpoint, in one line."""
    if not round_.failures:
        return "no STUN server is configured"
    causes = "; ".join(f"{server}: {reason}" for server, reason in round_.failures)
    return f"no STUN server answered ({causes})"


class Worker:
    def __init__(self, config: WorkerConfig, logger: logging.Logger) -> None:
        self._config = config
        self._logger = logger
        self._reporter = EndpointReporter(config.endpoint_ack_timeout_sec)
        self._credentials = RendezvousCredentials(
            config.auth_mode,
            shared_token=config.rendezvous_token,
            audience=config.id_token_audience,
        )
        self._udp: WorkerDatagramProtocol | None = None
        self._outbox: asyncio.Queue[str] | None = None
        self._signalling_changed = asyncio.Event()
        self._reconnect_requested = asyncio.Event()
        self._rendezvous_state = RendezvousState.CONNECTING
        self._connected_since: float | None = None
        self._last_ack_at: float | None = None
        self._last_ack_status: str | None = None
        self._last_round: StunRound | None = None
        self._last_round_at: float | None = None
        self._mapped: TransportAddress | None = None
        self._mapping: MappingBehaviour | None = None
        self._public_ip: str | None = None
        self._punch = PunchSessions(config.punch, probe_limits=config.probe_limits)
        self._punch_changed = asyncio.Event()
        self._punch_armed: float | None = None  # when _punch_timer wakes by itself
        self._endpoint_acked = asyncio.Event()
        self._echo_waiters: dict[tuple[str, int], asyncio.Future[EchoReplied]] = {}
        self._peer_data_received = 0
        self._peer_listings: dict[int, asyncio.Future[Peers]] = {}
        self._request_ids = itertools.count(1)
        self._relay_refused = 0
        self._relay_refused_log = LogThrottle(RELAY_REFUSED_LOG_INTERVAL_SEC)
        self._introductions = PendingIntroductions()
        self._ready = asyncio.Event()
        self._stun_unanswered_rounds = 0
        self._stun_unanswered_since: float | None = None
        self._stun_unanswered_reason: str | None = None
        self._no_endpoint_log = LogThrottle(NO_ENDPOINT_LOG_INTERVAL_SEC)
        self.data_plane = QuicDataPlane(
            worker_id=config.worker_id,
            key=config.key,
            expose_ports=config.expose_ports,
            introduce=self._introduce_for_data_plane,
            log=self._log,
        )
        self.data_plane.attach(self._punch, self._send_sealed)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then close everything."""
        config = self._config
        self._udp = await open_worker_socket(
            config.udp_bind_host, config.udp_port, self._logger, config.worker_id
        )
        self._udp.peer_handler = self._peer_datagram
        local_ip, local_port = self._udp.local_address
        self._log(
            WorkerEvent.UDP_SOCKET_BOUND,
            f"UDP socket bound to {local_ip}:{local_port}",
            udp_ip=local_ip,
            udp_port=local_port,
        )
        http_server = await start_http_server(
            HTTP_BIND_HOST,
            config.http_port,
            self.status,
            self._logger,
            self._api,
            self.readiness,
        )
        http_port = http_server.sockets[0].getsockname()[1]
        self._log(WorkerEvent.HTTP_LISTENING, f"HTTP listening on port {http_port}", port=http_port)
        # SOCKS_LISTEN, TCP_FORWARDS, UDP_FORWARDS, EXPOSE_UDP_PORTS: on the data plane.
        proxies = await start_proxies(self.data_plane, config, self._logger)

        tasks = [
            asyncio.create_task(self._stun_loop(), name="stun"),
            asyncio.create_task(self._rendezvous_loop(), name="rendezvous"),
            asyncio.create_task(self._punch_timer(), name="punch-timer"),
            asyncio.create_task(self.data_plane.run(), name="data-plane"),
        ]
        if config.public_ip_echo_url is not None:
            tasks.append(asyncio.create_task(self._lookup_public_ip(), name="public-ip"))
        stopped = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"{task.get_name()} task failed") from task.exception()
        finally:
            stopped.cancel()
            for task in tasks:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_SEC):
                    await asyncio.gather(*tasks, stopped, return_exceptions=True)
            self._rendezvous_state = RendezvousState.STOPPED
            await proxies.close()
            self._apply(self._punch.close_all(self._now()))
            self._udp.close()
            http_server.close()
            self._log(
                WorkerEvent.WORKER_SHUTDOWN, "worker stopped", udp_ip=local_ip, udp_port=local_port
            )

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        acknowledged = self._reporter.acknowledged_endpoint
        round_ = self._last_round
        udp = self._udp
        local = None
        if udp is not None:
            with contextlib.suppress(RuntimeError):
                local = udp.local_address
        return {
            "worker_id": self._config.worker_id,
            "public_key": self._config.key.public_key,
            "key_fingerprint": self._config.key.fingerprint,
            "udp_local": _endpoint(local),
            "udp_mapped": _endpoint(self._mapped),
            "mapping": None if self._mapping is None else self._mapping.value,
            "rendezvous_state": self._rendezvous_state.value,
            "report_state": self._reporter.state.value,
            "last_ack_time": iso_timestamp(self._last_ack_at),
            "last_ack_status": self._last_ack_status,
            "acknowledged_endpoint": (None if acknowledged is None else acknowledged.to_fields()),
            "connected_since": iso_timestamp(self._connected_since),
            "stun": {
                "servers": [str(server) for server in self._config.stun_servers],
                "last_round_time": iso_timestamp(self._last_round_at),
                "answers": [
                    {
                        "server": str(result.server),
                        "udp_ip": result.answer.mapped[0],
                        "udp_port": result.answer.mapped[1],
                        "rtt_ms": round(result.rtt_ms, 1),
                    }
                    for result in (round_.results if round_ else ())
                ],
                "failures": [
                    {"server": str(server), "reason": reason}
                    for server, reason in (round_.failures if round_ else ())
                ],
            },
            "datagrams": None if udp is None else udp.counters.as_dict(),
            "connect_to": list(self._config.connect_to),
            "tags": list(self._config.tags),
            "peer_data_received": self._peer_data_received,
            "relay_refused": self._relay_refused,
            "ready": self.readiness().ready,
            "endpoint_problem": self._endpoint_problem(),
            **self._punch.status(self._now()),
            "peer_connections": self.data_plane.status(),
        }

    def readiness(self) -> Readiness:
        """Ready (`GET /readyz` 200) once STUN has answered or the rendezvous has
        acknowledged this worker's endpoint; it stays ready from then on."""
        if self._ready.is_set():
            return Readiness(True)
        if self._stun_unanswered_reason is not None:
            return Readiness(False, "no_stun_answer", self._stun_unanswered_reason)
        if self._last_round is None:
            return Readiness(False, "starting", "the first STUN round is under way")
        return Readiness(False, "starting", "waiting for the rendezvous's acknowledgement")

    async def wait_ready(self) -> None:
        """Until `readiness()` is ready."""
        await self._ready.wait()

    async def wait_registered(self) -> None:
        """Until the rendezvous holds this worker's endpoint (it introduces only workers
        with one); returns at once while it does."""
        await self._endpoint_acked.wait()

    @property
    def worker_id(self) -> str:
        return self._config.worker_id

    def _endpoint_problem(self) -> dict[str, Any] | None:
        if self._stun_unanswered_reason is None:
            return None
        return {
            "reason": self._stun_unanswered_reason,
            "unanswered_rounds": self._stun_unanswered_rounds,
            "since": iso_timestamp(self._stun_unanswered_since),
            "reporting_last_known_endpoint": self._mapped is not None,
        }

    # ------------------------------------------------------------------ punching

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _peer_datagram(self, data: bytes, addr: TransportAddress) -> None:
        try:
            self._apply(self._punch.datagram_received(data, addr, self._now()))
        except Exception as error:  # nothing a peer sends may stop the socket
            self._log(
                WorkerEvent.PEER_DATAGRAM_FAILED,
                f"handling a peer datagram failed: {error!r}",
                level=logging.ERROR,
                reason=repr(error),
            )

    async def _punch_timer(self) -> None:
        while True:
            self._punch_changed.clear()
            self._punch_armed = self._punch.next_deadline()
            try:
                async with asyncio.timeout_at(self._punch_armed):
                    await self._punch_changed.wait()
            except TimeoutError:
                self._apply(self._punch.timer(self._now()))

    def _apply(self, actions: list[Action]) -> None:
        """Perform what the punch sessions asked for."""
        for action in actions:
            if isinstance(action, SendUdp | SendRelay):
                self._send_sealed(action)
            elif isinstance(action, Report):
                if self._outbox is not None:
                    self._outbox.put_nowait(encode_message(action.result))
            elif isinstance(action, EchoReplied):
                waiter = self._echo_waiters.pop((action.peer_id, action.echo_id), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(action)
            elif isinstance(action, Delivered):
                self._peer_data_received += 1
                self._log(
                    WorkerEvent.PEER_DATA_RECEIVED,
                    f"{len(action.payload)} bytes from {action.peer_id}",
                    level=logging.DEBUG,
                    peer_id=action.peer_id,
                    path=action.path.value,
                    size=len(action.payload),
                )
            elif isinstance(action, QuicReceived):
                self.data_plane.quic_received(action.peer_id, action.packet)
            elif isinstance(action, LogEvent):
                self._log(action.event, action.message, level=action.level, **action.fields)
        # Wake the timer only for a closer deadline: with the data plane, a batch comes
        # with every QUIC packet, and a wake each cost about as much as the packet.
        deadline = self._punch.next_deadline()
        if deadline is not None and (self._punch_armed is None or deadline < self._punch_armed):
            self._punch_changed.set()
        self.data_plane.punch_changed()

    def _send_sealed(self, action: SendUdp | SendRelay) -> None:
        """Send a sealed peer datagram. The data plane's packets come straight here: a
        send only ever moves the punch timers later, so it needs no wake-up."""
        if isinstance(action, SendUdp):
            if self._udp is not None:
                self._udp.send_datagram(action.data, action.addr)
        elif self._outbox is not None:
            message = RelayDatagram(session_id=action.session_id, data=action.data)
            self._outbox.put_nowait(encode_message(message))

    async def _introduce_for_data_plane(self, peer_id: str) -> None:
        """`introduce` for the data plane, whose connect() bounds the whole wait itself."""
        await self.introduce(peer_id, DEFAULT_CONNECT_TIMEOUT_SEC)

    def _request_connect(self, peer_id: str, source: str, request_id: int | None = None) -> bool:
        if self._outbox is None:
            return False
        request = ConnectRequest(peer_id=peer_id, request_id=request_id)
        self._outbox.put_nowait(encode_message(request))
        self._log(
            WorkerEvent.CONNECT_REQUESTED,
            f"asked the rendezvous to introduce {peer_id}",
            peer_id=peer_id,
            source=source,
            request_id=request_id,
        )
        return True

    async def introduce(self, peer_id: str, timeout: float, *, source: str = "data_plane") -> None:
        """Ask the rendezvous to introduce `peer_id` and wait until the punch session with
        it exists (an introduction the peer asked for at the same time serves too).

        Raises `ConnectRefused` with the rendezvous's error code (`peer_not_found`,
        `not_allowed`, ...; `probe_budget` when this worker will not probe the address it
        was given), or `PeerUnavailable` (`rendezvous_unavailable` without a connection to
        the rendezvous or when it ends first; `timeout`)."""
        try:
            validate_worker_id(peer_id)
        except ProtocolError as error:
            raise ConnectRefused("invalid_peer_id", error.detail) from None
        if peer_id == self._config.worker_id:
            raise ConnectRefused(
                ErrorCode.SELF_INTRODUCTION.value, "a worker cannot be introduced to itself"
            )
        request_id = next(self._request_ids)
        if not self._request_connect(peer_id, source, request_id):
            raise PeerUnavailable(
                "rendezvous_unavailable", "this worker is not connected to the rendezvous"
            )
        waiter = self._introductions.add(request_id, peer_id)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            raise PeerUnavailable(
                "timeout", f"the rendezvous did not introduce {peer_id} within {timeout:g} s"
            ) from None
        finally:
            self._introductions.forget(request_id)

    async def _connect_to_loop(self) -> None:
        """Ask for every CONNECT_TO peer without a live session, once the rendezvous holds
        our endpoint (it introduces only workers with one), and again while it is missing."""
        await self._endpoint_acked.wait()
        while True:
            for peer_id in self._config.connect_to:
                if self._punch.for_peer(peer_id) is None:
                    self._request_connect(peer_id, "CONNECT_TO")
            await asyncio.sleep(CONNECT_RETRY_SEC)

    # ------------------------------------------------------------------ HTTP API

    async def _api(self, method: str, target: str) -> ApiResponse | None:
        """`GET /peers?limit=&cursor=`, `POST /peers/{peer_id}/connect` and
        `POST /peers/{peer_id}/echo`."""
        path, _, query = target.partition("?")
        if path == "/peers":
            if method != "GET":
                return method_not_allowed(method, ("GET",))
            return await self._list_peers(query)
        parts = path.split("/")
        if len(parts) != 4 or parts[:2] != ["", "peers"] or parts[3] not in ("connect", "echo"):
            return None
        if method != "POST":
            return method_not_allowed(method, ("POST",))
        peer_id = unquote(parts[2])
        try:
            validate_worker_id(peer_id)
        except ProtocolError as error:
            return HTTPStatus.BAD_REQUEST, {"error": "invalid_peer_id", "detail": error.detail}
        if parts[3] == "connect":
            return await self._connect(peer_id)
        return await self._echo(peer_id)

    async def _connect(self, peer_id: str) -> ApiResponse:
        """200 with the session once it has a path, 202 with it while it is punching, or
        the reason there is none: the rendezvous's error code, or the worker's. A session
        that already has a path is answered as it is: a new introduction would replace it
        and reset every data-plane stream open on it."""
        with_path = (SessionState.CONNECTED, SessionState.RELAYED)
        session = self._punch.for_peer(peer_id)
        if session is None or session.state not in with_path:
            try:
                await self.introduce(peer_id, self._config.peer_echo_timeout_sec, source="http")
            except (ConnectRefused, PeerUnavailable) as error:
                body = {"error": error.reason, "detail": error.detail, "peer_id": peer_id}
                return http_status_for(error), body
            session = self._punch.for_peer(peer_id)
            if session is None:  # ended between the introduction and this answer
                return HTTPStatus.BAD_GATEWAY, {
                    "error": "session_ended",
                    "detail": f"the punch session with {peer_id} ended at once",
                    "peer_id": peer_id,
                }
        has_path = session.state in with_path
        return HTTPStatus.OK if has_path else HTTPStatus.ACCEPTED, {
            "peer_id": peer_id,
            "status": session.state.value,
            "session": session.status(self._now()),
        }

    async def _list_peers(self, query: str) -> ApiResponse:
        """Ask the rendezvous for one page of the peers the policy lets this worker reach."""
        params = parse_qs(query, keep_blank_values=False)
        raw_limit = params.get("limit", [str(LIST_PEERS_DEFAULT_LIMIT)])[-1]
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LIST_PEERS_MAX_LIMIT:
            return HTTPStatus.BAD_REQUEST, {
                "error": "invalid_limit",
                "detail": f"limit must be an integer in 1..{LIST_PEERS_MAX_LIMIT}",
            }
        cursor = params.get("cursor", [None])[-1]
        if cursor is not None:
            try:
                validate_worker_id(cursor)
            except ProtocolError as error:
                return HTTPStatus.BAD_REQUEST, {"error": "invalid_cursor", "detail": error.detail}
        try:
            answer = await self.list_peers(int(raw_limit), cursor)
        except PeerUnavailable as unavailable:
            return http_status_for(unavailable), {"error": unavailable.reason}
        fields = answer.to_fields()
        return HTTPStatus.OK, {"peers": fields["peers"], "next_cursor": fields["next_cursor"]}

    async def list_peers(
        self, limit: int = LIST_PEERS_DEFAULT_LIMIT, cursor: str | None = None
    ) -> Peers:
        """One page of the peers the rendezvous's policy lets this worker reach. Raises
        `PeerUnavailable` (`rendezvous_unavailable`, `timeout`)."""
        if self._outbox is None:
            raise PeerUnavailable(
                "rendezvous_unavailable", "this worker is not connected to the rendezvous"
            )
        request_id = next(self._request_ids)
        waiter: asyncio.Future[Peers] = asyncio.get_running_loop().create_future()
        self._peer_listings[request_id] = waiter
        request = ListPeers(limit=limit, cursor=cursor, request_id=request_id)
        self._outbox.put_nowait(encode_message(request))
        timeout = self._config.peer_echo_timeout_sec
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise PeerUnavailable(
                "timeout", f"the rendezvous did not list peers within {timeout:g} s"
            ) from None
        finally:
            self._peer_listings.pop(request_id, None)

    async def _echo(self, peer_id: str) -> ApiResponse:
        session = self._punch.for_peer(peer_id)
        if session is None:
            return HTTPStatus.NOT_FOUND, {"error": "no_session", "peer_id": peer_id}
        sent = session.send_echo(self._now())
        if sent is None:
            return HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": "no_path",
                "peer_id": peer_id,
                "state": session.state.value,
                "path": session.path.value,
            }
        echo_id, actions = sent
        waiter: asyncio.Future[EchoReplied] = asyncio.get_running_loop().create_future()
        self._echo_waiters[(peer_id, echo_id)] = waiter
        self._apply(actions)
        try:
            reply = await asyncio.wait_for(waiter, self._config.peer_echo_timeout_sec)
        except TimeoutError:
            return HTTPStatus.GATEWAY_TIMEOUT, {
                "error": "timeout",
                "peer_id": peer_id,
                "path": session.path.value,
            }
        finally:
            self._echo_waiters.pop((peer_id, echo_id), None)
        return HTTPStatus.OK, {
            "peer_id": peer_id,
            "session_id": session.session_id,
            "rtt_ms": reply.rtt_ms,
            "path": reply.path.value,
        }

    # ------------------------------------------------------------------ STUN

    async def _stun_loop(self) -> None:
        """Re-run STUN every STUN_REFRESH_SEC: it keeps the NAT mapping alive and finds
        out when the mapping changes."""
        assert self._udp is not None
        loop = asyncio.get_running_loop()
        config = self._config
        dropped_logged = 0
        while True:
            started = loop.time()
            round_ = await discover_mapping(
                self._udp,
                config.stun_servers,
                config.stun_retransmissions,
                self._logger,
                config.worker_id,
            )
            self._last_round, self._last_round_at = round_, time.time()
            mapped = round_.mapped
            if mapped is not None:
                self._stun_unanswered_rounds, self._stun_unanswered_since = 0, None
                self._stun_unanswered_reason = None
                self._ready.set()
                self._classified(round_, mapped, loop.time())
            else:
                self._stun_unanswered(round_, loop.time())
            dropped = self._udp.counters.dropped
            if dropped > dropped_logged:
                self._log(
                    WorkerEvent.UDP_DATAGRAM_DROPPED,
                    f"dropped {dropped - dropped_logged} unexpected UDP datagrams",
                    count=dropped - dropped_logged,
                    total=dropped,
                )
                dropped_logged = dropped
            await asyncio.sleep(max(0.0, started + config.stun_refresh_sec - loop.time()))

    def _stun_unanswered(self, round_: StunRound, now: float) -> None:
        """No STUN server answered this round: say so on /status, and in the log at most
        once a NO_ENDPOINT_LOG_INTERVAL_SEC while the worker has no endpoint at all."""
        self._stun_unanswered_rounds += 1
        if self._stun_unanswered_since is None:
            self._stun_unanswered_since = time.time()
        reason = _unanswered_reason(round_)
        self._stun_unanswered_reason = reason
        if self._mapped is not None:
            return  # the last known endpoint stays reported; each failure is stun_failed
        unlogged = self._no_endpoint_log.due(now)
        if unlogged is not None:
            self._log(
                WorkerEvent.NO_ENDPOINT,
                f"no public UDP endpoint after {self._stun_unanswered_rounds} STUN rounds: "
                f"{reason}; peers cannot be introduced to this worker",
                level=logging.WARNING,
                reason=reason,
                rounds=self._stun_unanswered_rounds,
                unlogged=unlogged,
            )

    def _classified(self, round_: StunRound, mapped: TransportAddress, now: float) -> None:
        assert self._udp is not None
        mapping = carry_forward_mapping(self._mapped, self._mapping, mapped, round_.mapping)
        changed = (mapped, mapping) != (self._mapped, self._mapping)
        self._mapped, self._mapping = mapped, mapping
        self._log(
            WorkerEvent.MAPPING_CLASSIFIED,
            f"mapping {mapping.value}, public endpoint {mapped[0]}:{mapped[1]}",
            level=logging.INFO if changed else logging.DEBUG,
            mapping=mapping.value,
            udp_ip=mapped[0],
            udp_port=mapped[1],
            answers=len(round_.results),
            failures=len(round_.failures),
            changed=changed,
        )
        report = UpdateUdpEndpoint(
            udp_ip=mapped[0],
            udp_port=mapped[1],
            mapping=mapping,
            local_port=self._udp.local_address[1],
        )
        self._dispatch(self._reporter.endpoint_discovered(report, now))

    async def _lookup_public_ip(self) -> None:
        url = self._config.public_ip_echo_url
        assert url is not None
        try:
            ip = await fetch_public_ip(url)
        except (OSError, ValueError) as error:
            self._log(
                WorkerEvent.PUBLIC_IP_LOOKUP_FAILED,
                f"public IP lookup failed: {error}",
                level=logging.WARNING,
                reason=str(error),
            )
            return
        self._public_ip = ip
        self._log(WorkerEvent.PUBLIC_IP_FOUND, f"echo service sees public IP {ip}", public_ip=ip)
        if self._outbox is not None:
            self._outbox.put_nowait(encode_message(RegisterPublicIp(ip=ip)))

    # ------------------------------------------------------------------ rendezvous

    async def _rendezvous_loop(self) -> None:
        config = self._config
        delays = reconnect_delays(
            config.reconnect_initial_delay_sec, config.reconnect_max_delay_sec
        )
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            self._rendezvous_state = RendezvousState.CONNECTING
            try:
                headers = {
                    **await self._credentials.headers(),
                    **config.key.upgrade_headers(),
                }
                websocket = await connect(
                    config.rendezvous_url,
                    additional_headers=headers,
                    open_timeout=WEBSOCKET_OPEN_TIMEOUT_SEC,
                    close_timeout=WEBSOCKET_CLOSE_TIMEOUT_SEC,
                    ping_interval=config.ping_interval_sec,
                    ping_timeout=config.ping_timeout_sec,
                    max_size=MAX_FRAME_BYTES,
                )
            except (OSError, TimeoutError, WebSocketException, CredentialsError) as error:
                self._log(
                    WorkerEvent.RENDEZVOUS_CONNECT_FAILED,
                    f"cannot connect to the rendezvous: {error}",
                    level=logging.WARNING,
                    reason=str(error) or type(error).__name__,
                )
            else:
                opened = loop.time()
                if await self._prove_key(websocket):
                    await self._session(websocket)
                else:
                    await websocket.close()
                ending = after_session(loop.time() - opened, websocket.close_code)
                if ending is SessionEnd.RESET_BACKOFF:
                    attempt = 0
                    delays = reconnect_delays(
                        config.reconnect_initial_delay_sec, config.reconnect_max_delay_sec
                    )
                elif ending is SessionEnd.REFUSED:
                    self._log(
                        WorkerEvent.RENDEZVOUS_REFUSED,
                        f"the rendezvous refused this worker ({websocket.close_code}: "
                        f"{websocket.close_reason}); waiting the longest reconnect delay",
                        level=logging.WARNING,
                        code=websocket.close_code,
                        reason=websocket.close_reason,
                    )
                    delays = reconnect_delays(
                        config.reconnect_max_delay_sec, config.reconnect_max_delay_sec
                    )
                elif ending is SessionEnd.REPLACED:
                    self._log(
                        WorkerEvent.WORKER_ID_TAKEN,
                        "another connection took this worker_id over; "
                        "waiting the longest reconnect delay",
                        level=logging.WARNING,
                        reason=websocket.close_reason,
                    )
                    delays = reconnect_delays(
                        config.reconnect_max_delay_sec, config.reconnect_max_delay_sec
                    )
            attempt += 1
            delay = next(delays)
            self._rendezvous_state = RendezvousState.WAITING_TO_RECONNECT
            self._log(
                WorkerEvent.RECONNECT_SCHEDULED,
                f"reconnecting to the rendezvous in {delay:.2f} s",
                delay_s=round(delay, 3),
                attempt=attempt,
            )
            await asyncio.sleep(delay)

    async def _prove_key(self, websocket: ClientConnection) -> bool:
        """Answer the rendezvous's challenge, the first frame it sends; False if it did
        not come (the connection closed, or something else came first)."""
        try:
            async with asyncio.timeout(WEBSOCKET_OPEN_TIMEOUT_SEC):
                challenge = decode_server_message(await websocket.recv())
            if not isinstance(challenge, AuthChallenge):
                raise ProtocolError(
                    ErrorCode.UNKNOWN_TYPE, f"expected auth_challenge first, got {challenge.TYPE}"
                )
            proof = self._config.key.prove(challenge, self._config.worker_id)
            await websocket.send(encode_message(proof))
        except ConnectionClosed:
            return False
        except TimeoutError:
            self._log(
                WorkerEvent.RENDEZVOUS_UNRESPONSIVE,
                f"no auth_challenge within {WEBSOCKET_OPEN_TIMEOUT_SEC:g} s",
                level=logging.WARNING,
                reason="no auth_challenge",
            )
            return False
        except ProtocolError as error:
            self._log(
                WorkerEvent.RENDEZVOUS_FRAME_INVALID,
                f"cannot prove the worker key: {error.detail}",
                level=logging.WARNING,
                reason=error.detail,
            )
            return False
        return True

    async def _session(self, websocket: ClientConnection) -> None:
        """One WebSocket connection, from open to close."""
        loop = asyncio.get_running_loop()
        self._rendezvous_state = RendezvousState.CONNECTED
        self._connected_since = time.time()
        self._log(
            WorkerEvent.RENDEZVOUS_CONNECTED,
            "connected to the rendezvous",
            url=self._config.rendezvous_url,
        )
        outbox: asyncio.Queue[str] = asyncio.Queue()
        self._outbox = outbox
        self._reconnect_requested.clear()
        self._endpoint_acked.clear()
        self._apply(self._punch.set_relay_available(True, loop.time()))
        if self._public_ip is not None:
            outbox.put_nowait(encode_message(RegisterPublicIp(ip=self._public_ip)))
        self._dispatch(self._reporter.connection_opened(loop.time()))
        tasks = [
            asyncio.create_task(self._read_frames(websocket), name="ws-reader"),
            asyncio.create_task(self._write_frames(websocket, outbox), name="ws-writer"),
            asyncio.create_task(self._run_ack_timer(), name="ack-timer"),
            asyncio.create_task(self._reconnect_requested.wait(), name="reconnect"),
        ]
        if self._config.connect_to:
            tasks.append(asyncio.create_task(self._connect_to_loop(), name="connect-to"))
        close_code, close_reason = 1000, "reconnecting"
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"{task.get_name()} failed") from task.exception()
        except asyncio.CancelledError:
            close_code, close_reason = 1001, "worker shutting down"
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._outbox = None
            self._introductions.abandon()
            self._apply(self._punch.set_relay_available(False, loop.time()))
            self._reporter.connection_closed()
            self._connected_since = None
            await websocket.close(code=close_code, reason=close_reason)
            self._log(
                WorkerEvent.RENDEZVOUS_DISCONNECTED,
                "disconnected from the rendezvous",
                code=websocket.close_code,
                reason=websocket.close_reason,
            )

    async def _read_frames(self, websocket: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in websocket:
                self._frame_received(frame)

    async def _write_frames(self, websocket: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await websocket.send(await outbox.get())

    async def _run_ack_timer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._signalling_changed.clear()
            try:
                async with asyncio.timeout_at(self._reporter.deadline):
                    await self._signalling_changed.wait()
            except TimeoutError:
                self._dispatch(self._reporter.timer_expired(loop.time()))

    def _frame_received(self, frame: str | bytes) -> None:
        try:
            message = decode_server_message(frame)
        except ProtocolError as error:
            self._log(
                WorkerEvent.RENDEZVOUS_FRAME_INVALID,
                f"ignored an invalid frame from the rendezvous: {error.detail}",
                level=logging.WARNING,
                reason=error.detail,
            )
            return
        if isinstance(message, UdpEndpointAck):
            outcome = self._reporter.ack_received(message)
            self._last_ack_at, self._last_ack_status = time.time(), message.status.value
            report = outcome.report
            self._log(
                WorkerEvent.ENDPOINT_ACK,
                f"rendezvous answered the endpoint report: {message.status.value}",
                level=logging.INFO if outcome.accepted and report else logging.WARNING,
                status=message.status.value,
                detail=message.detail,
                udp_ip=None if report is None else report.udp_ip,
                udp_port=None if report is None else report.udp_port,
                solicited=report is not None,
            )
            if outcome.accepted and report is not None:
                self._endpoint_acked.set()
                self._ready.set()
            self._signalling_changed.set()
        elif isinstance(message, PeerIntroduction):
            self._apply(self._punch.introduce(message, self._now()))
            session = self._punch.for_peer(message.peer_id)
            started = session is not None and session.session_id == message.session_id
            self._introductions.introduced(message, started)
        elif isinstance(message, RelayDatagram):
            self._apply(self._punch.relay_received(message.session_id, message.data, self._now()))
        elif isinstance(message, Peers):
            listing = self._peer_listings.pop(message.request_id or 0, None)
            if listing is not None and not listing.done():
                listing.set_result(message)
        elif isinstance(message, ErrorMessage) and message.code == ErrorCode.RELAY_RATE_LIMITED:
            self._relay_refused += 1
            if self._relay_refused_log.due(self._now()) is not None:
                self._log(
                    WorkerEvent.RENDEZVOUS_ERROR,
                    f"rendezvous reported an error: {message.code} ({self._relay_refused} so far)",
                    level=logging.WARNING,
                    code=message.code,
                    reason=message.detail,
                    total=self._relay_refused,
                )
        elif isinstance(message, ErrorMessage):
            self._introductions.refused(message)
            self._log(
                WorkerEvent.RENDEZVOUS_ERROR,
                f"rendezvous reported an error: {message.code}",
                level=logging.WARNING,
                code=message.code,
                reason=message.detail,
                request_id=message.request_id,
            )
        else:
            self._log(
                WorkerEvent.RENDEZVOUS_MESSAGE,
                f"received {message.TYPE}",
                level=logging.DEBUG,
                message_type=message.TYPE,
            )

    def _dispatch(self, action: SignallingAction | None) -> None:
        if isinstance(action, SendReport):
            report = action.report
            if self._outbox is None:
                return
            self._outbox.put_nowait(encode_message(report))
            self._log(
                WorkerEvent.ENDPOINT_REPORTED,
                f"reported UDP endpoint {report.udp_ip}:{report.udp_port}",
                udp_ip=report.udp_ip,
                udp_port=report.udp_port,
                mapping=None if report.mapping is None else report.mapping.value,
                local_port=report.local_port,
                resend=action.resend,
            )
        elif isinstance(action, ReconnectNeeded):
            self._log(
                WorkerEvent.RENDEZVOUS_UNRESPONSIVE,
                f"reconnecting: {action.reason}",
                level=logging.WARNING,
                reason=action.reason,
            )
            self._reconnect_requested.set()
        self._signalling_changed.set()

    # ------------------------------------------------------------------ logging

    def _log(
        self, event: WorkerEvent, message: str, *, level: int = logging.INFO, **fields: Any
    ) -> None:
        log_event(
            self._logger, event, message, level=level, worker_id=self._config.worker_id, **fields
        )
