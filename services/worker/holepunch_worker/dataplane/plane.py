"""The worker's data plane (interface.DataPlane) on asyncio: one authenticated QUIC
connection (a `PeerLink`) per punch session whose peer has a key.

The worker feeds it: `punch_changed()` after every batch of punch actions (a session got
a path: make its link; a session ended or was replaced: its link closes, its streams get
ConnectionResetError), `quic_received()` for each `QuicReceived` action. It sends the
links' packets with `PunchSession.send_quic` on the session's current path, has the worker
send the sealed datagrams (`send`), and keeps the links' timers while `run()` runs (its
end closes every link).

Connecting to a peer without a session asks for an introduction (`introduce`, supplied by
the worker: it raises ConnectRefused with the rendezvous's reason) and waits for the
session, its path and the handshake, all under one timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aioquic.quic.events import DatagramFrameReceived
from holepunch_logging import WorkerEvent
from holepunch_protocol import MAX_QUIC_PACKET_BYTES, PathKind
from holepunch_protocol.stream_header import (
    StreamHeaderError,
    StreamStatus,
    decode_status,
    encode_open,
)

from holepunch_worker.dataplane.exposure import Exposure, LogFunction
from holepunch_worker.dataplane.interface import (
    DEFAULT_CONNECT_TIMEOUT_SEC,
    ConnectRefused,
    DatagramChannel,
    DatagramHandler,
    PeerAuthenticationFailed,
    PeerUnavailable,
    StreamHandler,
    StreamRefused,
)
from holepunch_worker.dataplane.link import (
    KEY_MISMATCH,
    Authenticated,
    Closed,
    LinkEvent,
    LinkSettings,
    PeerLink,
    QuicEventReceived,
)
from holepunch_worker.dataplane.streams import StreamMux
from holepunch_worker.identity import WorkerKey
from holepunch_worker.punch import PunchSession, PunchSessions, SendRelay, SendUdp

__all__ = ["MAX_DATAGRAM_PAYLOAD", "QuicDataPlane", "QuicPeerConnection"]

# A DATAGRAM frame must fit one QUIC packet with its short header, packet number, AEAD
# tag and frame header (about 32 bytes); the channel byte comes out of the rest too.
MAX_DATAGRAM_PAYLOAD = MAX_QUIC_PACKET_BYTES - 64 - 1
SESSION_ENDED = "session_ended"
SESSION_REPLACED = "session_replaced"
SHUTDOWN = "shutdown"
INTERNAL_ERROR = "internal_error"
NO_PATH = "no_path"  # the punch session's end reason when it failed

Introduce = Callable[[str], Awaitable[None]]
SendSealed = Callable[[SendUdp | SendRelay], None]


class QuicPeerConnection:
    """One peer's QUIC connection (interface.PeerConnection)."""

    def __init__(self, plane: QuicDataPlane, link: PeerLink, session_id: str) -> None:
        self._plane = plane
        self.link = link
        self.session_id = session_id
        self.since = time.time()
        self.mux: StreamMux | None = None
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.datagrams_lost = 0
        loop = asyncio.get_running_loop()
        self._authenticated: asyncio.Future[None] = loop.create_future()
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ PeerConnection

    @property
    def peer_id(self) -> str:
        return self.link.peer_id

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def close_reason(self) -> str | None:
        return self.link.close_reason

    @property
    def max_datagram_payload(self) -> int:
        return MAX_DATAGRAM_PAYLOAD

    async def open_stream(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        header = encode_open(port)
        await self.wait_authenticated()
        mux = self.mux
        assert mux is not None
        try:
            _, reader, writer = mux.open_stream()
        except ConnectionResetError:
            raise self._unavailable() from None
        writer.write(header)
        try:
            status = decode_status(await reader.readexactly(1))
        except (asyncio.IncompleteReadError, ConnectionError, StreamHeaderError) as error:
            writer.transport.abort()
            if self.closed:
                raise self._unavailable() from None
            raise StreamRefused(
                "stream_failed", f"no valid answer from the peer: {error}"
            ) from None
        if status is not StreamStatus.OK:
            writer.close()
            raise StreamRefused(status.reason, f"{self.peer_id} refused port {port}")
        return reader, writer

    def send_datagram(self, channel: DatagramChannel, payload: bytes) -> None:
        if len(payload) > MAX_DATAGRAM_PAYLOAD:
            raise ValueError(f"datagram payload is longer than {MAX_DATAGRAM_PAYLOAD} bytes")
        if self.closed or not self.link.authenticated:
            raise self._unavailable()
        session = self._plane._session(self)
        if session is None or session.path is PathKind.NONE:
            self.datagrams_lost += 1  # no path now: QUIC never retransmits a datagram
            return
        self.link.quic.send_datagram_frame(bytes([channel]) + payload)
        self.datagrams_sent += 1
        self._plane._schedule_flush(self)

    def status(self) -> dict[str, Any]:
        session = self._plane._session(self)
        path = PathKind.NONE if session is None else session.path
        rtt = None if session is None else session.rtt_ms.get(path)
        mux = self.mux
        return {
            "peer_id": self.peer_id,
            "session_id": self.session_id,
            "role": "client" if self.link.is_client else "server",
            "state": self.link.state.value,
            "path": path.value,
            "rtt_ms": rtt,
            "streams_open": 0 if mux is None else mux.streams_open,
            "streams_opened": 0 if mux is None else mux.streams_opened,
            "bytes_sent": 0 if mux is None else mux.bytes_sent,
            "bytes_received": 0 if mux is None else mux.bytes_received,
            "datagrams_sent": self.datagrams_sent,
            "datagrams_received": self.datagrams_received,
            "datagrams_lost": self.datagrams_lost,
            "authenticated": self.link.authenticated,
            "since": self.since,
            "close_reason": self.close_reason,
        }

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # ------------------------------------------------------------------ plane side

    async def wait_authenticated(self) -> None:
        await asyncio.shield(self._authenticated)

    def _unavailable(self) -> PeerUnavailable:
        reason = self.close_reason or "connection_lost"
        return PeerUnavailable(
            "connection_lost", f"the connection to {self.peer_id} ended: {reason}"
        )

    def _on_authenticated(self) -> None:
        # StreamMux coalesces its writes into one transmit per loop iteration itself.
        self.mux = StreamMux(
            self.link.quic, lambda: self._plane._flush(self), peer_name=self.peer_id
        )
        if not self._authenticated.done():
            self._authenticated.set_result(None)

    def _on_closed(self, reason: str) -> None:
        if not self._authenticated.done():
            error: Exception
            if reason == KEY_MISMATCH:
                error = PeerAuthenticationFailed(
                    KEY_MISMATCH, f"{self.peer_id}'s TLS key is not the one it was introduced with"
                )
            else:
                error = self._unavailable()
            self._authenticated.set_exception(error)
            self._authenticated.exception()  # retrieved: nobody may be waiting
        if self.mux is not None:
            self.mux.connection_lost(
                ConnectionResetError(f"connection to {self.peer_id}: {reason}")
            )
        self._closed.set()


class QuicDataPlane:
    """interface.DataPlane for one worker."""

    def __init__(
        self,
        *,
        worker_id: str,
        key: WorkerKey,
        expose_ports: frozenset[int],
        introduce: Introduce,
        log: LogFunction,
        settings: LinkSettings | None = None,
    ) -> None:
        self._worker_id = worker_id
        self._key = key
        self._introduce = introduce
        self._log = log
        self._settings = settings or LinkSettings()
        self.exposure = Exposure(expose_ports, log, self._now)
        self._punch: PunchSessions | None = None
        self._send: SendSealed | None = None
        self._connections: dict[str, QuicPeerConnection] = {}
        self._finished_sessions: set[str] = set()  # no second link on a session
        self._datagram_handlers: dict[DatagramChannel, DatagramHandler] = {}
        self._flush_scheduled: set[QuicPeerConnection] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None  # when `_timer` fires
        self._sessions_seen: tuple[tuple[str, PathKind], ...] = ()
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # ------------------------------------------------------------------ worker side

    def attach(self, punch: PunchSessions, send: SendSealed) -> None:
        """The worker's punch sessions, and how it sends what `send_quic` seals."""
        self._punch, self._send = punch, send

    def punch_changed(self) -> None:
        """Match the links to the punch sessions (called after every batch of actions)."""
        if self._punch is None:
            return
        # Called for every batch of actions (every packet): skip when nothing moved.
        seen = tuple((s.session_id, s.path) for s in self._punch.active())
        if seen == self._sessions_seen:
            return
        self._sessions_seen = seen
        self._notify()  # connect() waits on sessions appearing, getting a path, ending
        active = {s.session_id: s for s in self._punch.active()}
        for peer_id, conn in list(self._connections.items()):
            session = active.get(conn.session_id)
            if session is None:
                replaced = self._punch.for_peer(peer_id) is not None
                self._close(conn, SESSION_REPLACED if replaced else SESSION_ENDED)
        for session in active.values():
            if session.path is not PathKind.NONE:
                self._link_for(session)

    def quic_received(self, peer_id: str, packet: bytes) -> None:
        if self._punch is None:
            return
        session = self._punch.for_peer(peer_id)
        if session is None:
            return
        conn = self._link_for(session)
        if conn is None:
            return
        with self._contained(conn):
            events = conn.link.packet_received(packet, self._now())
            self._handle(conn, events)
            if conn.link.authenticated and all(isinstance(e, QuicEventReceived) for e in events):
                # Streams and datagrams: the acknowledgements and the writers they free
                # wait for the end of this loop turn; the worker reads a batch of datagrams
                # per turn (udp.py), so one flush answers the whole batch.
                self._schedule_flush(conn)
                return
            # The handshake, its completion, a close: answered at once (the Finished goes
            # out before anyone told "authenticated" acts on it).
            if conn.mux is not None and not conn.closed:
                conn.mux.after_receive()
            self._flush(conn)

    async def run(self) -> None:
        """Serve until cancelled; then every link is closed. The links' timers are one
        `call_at` handle (as aioquic's own asyncio layer keeps them), re-armed only when a
        flush brings the next deadline closer: a task woken per packet cost more."""
        try:
            await asyncio.Event().wait()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self.close_all(SHUTDOWN)

    def _arm(self) -> None:
        """The timer at the earliest deadline of every link."""
        deadlines = [c.link.next_deadline() for c in self._connections.values()]
        deadline = min((d for d in deadlines if d is not None), default=None)
        if deadline == self._armed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._armed = deadline
        loop = asyncio.get_running_loop()
        self._timer = None if deadline is None else loop.call_at(deadline, self._timers_due)

    def _timers_due(self) -> None:
        self._timer, self._armed = None, None
        now = self._now()
        for conn in list(self._connections.values()):
            when = conn.link.next_deadline()
            if when is not None and now >= when:
                with self._contained(conn):
                    self._handle(conn, conn.link.timer(now))
                    self._flush(conn)
        self._arm()

    def close_all(self, reason: str = SHUTDOWN) -> None:
        for conn in list(self._connections.values()):
            self._close(conn, reason)
        for task in self._tasks:
            task.cancel()

    # ------------------------------------------------------------------ DataPlane

    async def connect(
        self, peer_id: str, *, timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC
    ) -> QuicPeerConnection:
        try:
            async with asyncio.timeout(timeout):
                return await self._connect(peer_id)
        except TimeoutError:
            raise PeerUnavailable(
                "timeout", f"no authenticated connection to {peer_id} within {timeout:g} s"
            ) from None

    async def open_stream(
        self, peer_id: str, port: int, *, timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        conn = await self.connect(peer_id, timeout=timeout)
        return await conn.open_stream(port)

    def serve_port(self, port: int, handler: StreamHandler) -> None:
        self.exposure.serve_port(port, handler)

    def on_datagram(self, channel: DatagramChannel, handler: DatagramHandler) -> None:
        self._datagram_handlers[channel] = handler

    def send_datagram(self, peer_id: str, channel: DatagramChannel, payload: bytes) -> None:
        conn = self._connections.get(peer_id)
        if conn is None or conn.closed:
            raise PeerUnavailable("no_connection", f"no connection to {peer_id}")
        conn.send_datagram(channel, payload)

    def status(self) -> list[dict[str, Any]]:
        return [conn.status() for conn in self._connections.values()]

    # ------------------------------------------------------------------ internals

    async def _connect(self, peer_id: str) -> QuicPeerConnection:
        asked = False
        asked_for: str | None = None  # the session (if any) there was when we asked
        seen: set[str] = set()  # sessions with the peer while this connect waited
        while True:
            conn = self._connections.get(peer_id)
            if conn is not None:
                seen.add(conn.session_id)
            if conn is not None and not conn.closed:
                try:
                    await conn.wait_authenticated()
                except PeerUnavailable:
                    if conn.close_reason not in (SESSION_REPLACED, SESSION_ENDED):
                        raise
                    continue  # see below what became of the session
                if not conn.closed:
                    return conn
                continue
            session = None if self._punch is None else self._punch.for_peer(peer_id)
            if session is not None:
                seen.add(session.session_id)
            ended = None if self._punch is None else self._punch.last_ended(peer_id)
            if ended is not None and ended.session_id in seen and ended.end_reason == NO_PATH:
                raise ConnectRefused(
                    NO_PATH, f"neither a direct path nor the relay reached {peer_id}"
                )
            if session is not None and session.peer_public_key is None:
                raise PeerUnavailable(
                    "keyless_peer", f"{peer_id} has no worker key: no authenticated data plane"
                )
            usable = session is not None and session.session_id not in self._finished_sessions
            current = None if session is None else session.session_id
            if not usable and (not asked or current != asked_for):
                asked, asked_for = True, current
                await self._introduce(peer_id)
                continue  # look again: much may have happened while we were asking
            await self._wait_change()

    async def _wait_change(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _session(self, conn: QuicPeerConnection) -> PunchSession | None:
        if self._punch is None:
            return None
        session = self._punch.for_peer(conn.peer_id)
        return session if session is not None and session.session_id == conn.session_id else None

    def _link_for(self, session: PunchSession) -> QuicPeerConnection | None:
        """The session's connection, made now if it has none (None: keyless, or its link
        already ended)."""
        conn = self._connections.get(session.peer_id)
        if conn is not None and conn.session_id == session.session_id:
            return conn
        if session.peer_public_key is None or session.session_id in self._finished_sessions:
            return None
        if conn is not None:
            self._close(conn, SESSION_REPLACED)
        link = PeerLink(
            local_id=self._worker_id,
            peer_id=session.peer_id,
            key=self._key,
            pinned_key=session.peer_public_key,
            now=self._now(),
            settings=self._settings,
        )
        conn = QuicPeerConnection(self, link, session.session_id)
        self._connections[session.peer_id] = conn
        self._flush(conn)
        self._notify()
        return conn

    @contextlib.contextmanager
    def _contained(self, conn: QuicPeerConnection) -> Iterator[None]:
        """A failure inside one connection ends that connection, never the worker (run()
        is one of the worker's tasks) nor another connection."""
        try:
            yield
        except Exception as error:
            self._log(
                WorkerEvent.PEER_LINK_CLOSED,
                f"QUIC connection with {conn.peer_id} failed: {error!r}",
                level=logging.ERROR,
                peer_id=conn.peer_id,
                session_id=conn.session_id,
                reason=INTERNAL_ERROR,
                detail=repr(error),
            )
            with contextlib.suppress(Exception):
                self._close(conn, INTERNAL_ERROR)

    def _close(self, conn: QuicPeerConnection, reason: str) -> None:
        self._handle(conn, conn.link.close(reason))
        self._flush(conn)

    def _handle(self, conn: QuicPeerConnection, events: list[LinkEvent]) -> None:
        for event in events:
            if isinstance(event, Authenticated):
                conn._on_authenticated()
                self._log(
                    WorkerEvent.PEER_LINK_AUTHENTICATED,
                    f"authenticated QUIC connection with {conn.peer_id}",
                    peer_id=conn.peer_id,
                    session_id=conn.session_id,
                    role="client" if conn.link.is_client else "server",
                )
            elif isinstance(event, QuicEventReceived):
                self._quic_event(conn, event)
            elif isinstance(event, Closed):
                self._closed(conn, event)
        if events:
            self._notify()

    def _quic_event(self, conn: QuicPeerConnection, received: QuicEventReceived) -> None:
        event = received.event
        if isinstance(event, DatagramFrameReceived):
            conn.datagrams_received += 1
            data = event.data
            if not data:
                return
            try:
                handler = self._datagram_handlers.get(DatagramChannel(data[0]))
            except ValueError:
                return
            if handler is not None:
                handler(conn.peer_id, data[1:])
            return
        mux = conn.mux
        assert mux is not None  # events come only after authentication
        incoming = mux.event_received(event)
        if incoming is not None:
            _, reader, writer = incoming
            task = asyncio.create_task(
                self.exposure.accept(conn.peer_id, reader, writer, mux.streams_open)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _closed(self, conn: QuicPeerConnection, event: Closed) -> None:
        self._finished_sessions.add(conn.session_id)
        if self._connections.get(conn.peer_id) is conn:
            del self._connections[conn.peer_id]
        conn._on_closed(event.reason)
        if event.reason == KEY_MISMATCH and not event.authenticated:
            self._log(
                WorkerEvent.PEER_LINK_AUTHENTICATION_FAILED,
                f"{conn.peer_id}'s TLS key is not the key it was introduced with: closed",
                level=logging.WARNING,
                peer_id=conn.peer_id,
                session_id=conn.session_id,
                reason=KEY_MISMATCH,
                by_peer=event.by_peer,
            )
        else:
            self._log(
                WorkerEvent.PEER_LINK_CLOSED,
                f"QUIC connection with {conn.peer_id} closed: {event.reason}",
                peer_id=conn.peer_id,
                session_id=conn.session_id,
                reason=event.reason,
                by_peer=event.by_peer,
                was_authenticated=event.authenticated,
            )

    def _schedule_flush(self, conn: QuicPeerConnection) -> None:
        """Coalesce a burst of writes, or of received packets, into one flush at the end
        of this loop iteration."""
        if conn in self._flush_scheduled:
            return
        self._flush_scheduled.add(conn)

        def flush() -> None:
            self._flush_scheduled.discard(conn)
            with self._contained(conn):
                if conn.mux is not None and not conn.closed:
                    conn.mux.after_receive()  # acknowledgements may have freed writers
                self._flush(conn)  # after a close too: its CONNECTION_CLOSE is owed

        asyncio.get_running_loop().call_soon(flush)

    def _flush(self, conn: QuicPeerConnection) -> None:
        now = self._now()
        packets = conn.link.packets_to_send(now)
        session = self._session(conn)
        for packet in packets:
            # No path at this moment: the packet is dropped, QUIC retransmits what matters.
            sent = None if session is None else session.send_quic(packet, now)
            if sent is not None and self._send is not None:
                for action in sent:
                    self._send(action)
        # Re-arm only for a closer deadline: sending and receiving mostly push deadlines
        # later, and a timer that fires early finds nothing due and re-arms.
        deadline = conn.link.next_deadline()
        if deadline is not None and (self._armed is None or deadline < self._armed):
            self._arm()
