"""What the rendezvous does with one frame from one worker: pure, no I/O.

`decode_frame` decodes and validates a frame once; `lookups_for` says what handling it
needs from beyond this process (records of other workers, a session made elsewhere);
`handle_message` applies it to the registry and the sessions and returns an `Outcome`:
everything the I/O layer must do (the reply, the event to log, the messages for other
workers, and the record or session to publish). The WebSocket layer only does it; every
decision is here, testable without a socket.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from holepunch_logging import RendezvousEvent
from holepunch_protocol import (
    AckStatus,
    AuthProof,
    ClientMessage,
    ConnectRequest,
    EchoRequest,
    EchoResponse,
    ErrorCode,
    ErrorMessage,
    GetMyDetails,
    ListPeers,
    MappingBehaviour,
    MyDetailsResponse,
    PeerIntroduction,
    PeerRole,
    ProtocolError,
    PunchResult,
    PunchStatus,
    RegisterPublicIp,
    RelayDatagram,
    ServerMessage,
    UdpEndpointAck,
    UpdateUdpEndpoint,
    decode_client_message,
)

from holepunch_rendezvous.policy import ALLOW_ALL, IntroductionPolicy, peers_page
from holepunch_rendezvous.punch_sessions import PunchSessionRecord, PunchSessionTable
from holepunch_rendezvous.registry import Page, Registry, UdpEndpoint, WorkerRecord

__all__ = [
    "NO_LOOKUPS",
    "Delivery",
    "Event",
    "Lookups",
    "Outcome",
    "RecordLookup",
    "decode_frame",
    "handle_binary_frame",
    "handle_message",
    "handle_text_frame",
    "introduce",
    "lookups_for",
]


class RecordLookup(Protocol):
    """Where `introduce` finds both workers: the registry, or records fetched for it."""

    def get(self, worker_id: str, /) -> WorkerRecord | None: ...


@dataclass(frozen=True, slots=True)
class Event:
    name: RendezvousEvent
    message: str
    level: int = logging.INFO
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message for another worker's connection."""

    worker_id: str
    message: ServerMessage


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything a handled message asks of the I/O layer.

    `changed_record`: the sender's record, changed (to publish before the reply, so that
    an ack means every instance sees the change); `created_session`: the punch session
    an introduction made (to publish likewise).
    """

    reply: ServerMessage | None = None
    event: Event | None = None
    deliveries: tuple[Delivery, ...] = ()
    changed_record: WorkerRecord | None = None
    created_session: PunchSessionRecord | None = None


@dataclass(frozen=True, slots=True)
class Lookups:
    """What handling a message needs from beyond this process, if it is not here: the
    records of `worker_ids`, and the session `session_id`."""

    worker_ids: tuple[str, ...] = ()
    session_id: str | None = None


NO_LOOKUPS = Lookups()


def lookups_for(
    registry: Registry, worker_id: str, connection_id: int, message: ClientMessage
) -> Lookups:
    """What `handle_message` will look up for this message (nothing for a replaced
    connection: it is refused before any look-up)."""
    match message:
        case ConnectRequest():
            lookups = Lookups(worker_ids=(message.peer_id,))
        case RelayDatagram() | PunchResult():
            lookups = Lookups(session_id=message.session_id)
        case _:
            return NO_LOOKUPS
    return lookups if registry.is_current(worker_id, connection_id) else NO_LOOKUPS


def _rejection(worker_id: str, error: ProtocolError, request_id: int | None = None) -> Outcome:
    fields = {"worker_id": worker_id, "code": error.code.value, "reason": error.detail}
    if error.message_type == UpdateUdpEndpoint.TYPE:
        # Workers of the original design wait for an ack, so a rejected update gets one.
        return Outcome(
            reply=UdpEndpointAck(AckStatus.ERROR, error.detail),
            event=Event(
                RendezvousEvent.UDP_ENDPOINT_REJECTED,
                f"Rejected UDP endpoint update from worker {worker_id}: {error.detail}",
                logging.WARNING,
                fields,
            ),
        )
    if error.message_type is not None:
        fields["message_type"] = error.message_type
    return Outcome(
        reply=ErrorMessage.from_error(error, request_id),
        event=Event(
            RendezvousEvent.MESSAGE_REJECTED,
            f"Rejected message from worker {worker_id}: {error.detail}",
            logging.WARNING,
            fields,
        ),
    )


def handle_binary_frame(worker_id: str) -> Outcome:
    error = ProtocolError(ErrorCode.BINARY_FRAME, "binary frames are not accepted: send JSON text")
    return _rejection(worker_id, error)


def introduce(
    registry: RecordLookup,
    sessions: PunchSessionTable,
    initiator: str,
    responder: str,
    now: float,
    policy: IntroductionPolicy | None = None,
    request_id: int | None = None,
) -> Outcome:
    """Make a punch session between two workers and tell both; or say why not.
    `policy`: who may reach whom (None: the operator's own introduction, not checked).
    `request_id`: the initiator's connect_request's, echoed in the refusal or in the
    initiator's introduction."""

    def refuse(code: ErrorCode, detail: str, **fields: Any) -> Outcome:
        error = ProtocolError(code, detail, ConnectRequest.TYPE)
        outcome = _rejection(initiator, error, request_id)
        assert outcome.event is not None
        event = Event(
            RendezvousEvent.INTRODUCTION_REJECTED,
            f"Cannot introduce {initiator} to {responder}: {detail}",
            logging.WARNING,
            {**outcome.event.fields, "peer_id": responder, **fields},
        )
        return Outcome(reply=outcome.reply, event=event)

    if initiator == responder:
        return refuse(ErrorCode.SELF_INTRODUCTION, "a worker cannot be introduced to itself")
    first, second = registry.get(initiator), registry.get(responder)
    if first is None:
        return refuse(ErrorCode.PEER_NOT_FOUND, f"worker {initiator!r} is not connected")
    if second is None:
        return refuse(ErrorCode.PEER_NOT_FOUND, f"worker {responder!r} is not connected")
    if policy is not None and not policy.allows(first.tags, second.tags):
        # Checked before the endpoints, so a refusal tells nothing about the peer's state.
        return refuse(
            ErrorCode.NOT_ALLOWED,
            f"the introduction policy does not let {initiator!r} reach {responder!r}",
            tags=list(first.tags),
            peer_tags=list(second.tags),
        )
    if first.udp_endpoint is None:
        return refuse(ErrorCode.NO_ENDPOINT, f"worker {initiator!r} has no UDP endpoint yet")
    if second.udp_endpoint is None:
        return refuse(
            ErrorCode.PEER_HAS_NO_ENDPOINT, f"worker {responder!r} has no UDP endpoint yet"
        )
    refusal = sessions.caps.check(
        initiator,
        responder,
        {
            initiator: sessions.count_of(initiator, except_with=responder),
            responder: sessions.count_of(responder, except_with=initiator),
        },
        now,
    )
    if refusal is not None:
        return refuse(refusal.code, refusal.detail)
    a, b = first.udp_endpoint, second.udp_endpoint
    dependent = MappingBehaviour.ENDPOINT_DEPENDENT
    relay_first = dependent in (a.mapping, b.mapping)
    session = sessions.create(initiator, responder, now, relay_first=relay_first)

    def introduction(
        peer: WorkerRecord, endpoint: UdpEndpoint, role: PeerRole, request: int | None = None
    ) -> PeerIntroduction:
        return PeerIntroduction(
            session_id=session.session_id,
            peer_id=peer.worker_id,
            peer_udp_ip=endpoint.ip,
            peer_udp_port=endpoint.port,
            peer_mapping=endpoint.mapping,
            secret=session.secret,
            role=role,
            relay_first=relay_first,
            peer_public_key=peer.public_key,
            request_id=request,
        )

    return Outcome(
        event=Event(
            RendezvousEvent.PEER_INTRODUCED,
            f"Introduced {initiator} ({a.ip}:{a.port}) and {responder} ({b.ip}:{b.port})",
            fields={
                "worker_id": initiator,
                "peer_id": responder,
                "session_id": session.session_id,
                "udp_ip": a.ip,
                "udp_port": a.port,
                "mapping": a.mapping.value if a.mapping else None,
                "peer_udp_ip": b.ip,
                "peer_udp_port": b.port,
                "peer_mapping": b.mapping.value if b.mapping else None,
                "relay_first": relay_first,
            },
        ),
        deliveries=(
            Delivery(initiator, introduction(second, b, PeerRole.INITIATOR, request_id)),
            Delivery(responder, introduction(first, a, PeerRole.RESPONDER)),
        ),
        created_session=session,
    )


def _punch_result(sessions: PunchSessionTable, worker_id: str, result: PunchResult) -> Outcome:
    session = sessions.get(result.session_id)
    if session is None or session.peer_of(worker_id) != result.peer_id:
        return _rejection(
            worker_id,
            ProtocolError(ErrorCode.UNKNOWN_SESSION, "no such session for you", result.TYPE),
        )
    session.results[worker_id] = result
    return Outcome(
        event=Event(
            RendezvousEvent.PUNCH_RESULT,
            f"Worker {worker_id} to {result.peer_id}: {result.status.value} "
            f"({result.path.value}, {result.attempts} attempts, {result.elapsed_ms:.0f} ms)",
            logging.INFO if result.status is not PunchStatus.FAILED else logging.WARNING,
            {
                "worker_id": worker_id,
                "peer_id": result.peer_id,
                "session_id": result.session_id,
                "status": result.status.value,
                "path": result.path.value,
                "attempts": result.attempts,
                "elapsed_ms": result.elapsed_ms,
                "rtt_ms": result.rtt_ms,
                "peer_udp_ip": result.peer_udp_ip,
                "peer_udp_port": result.peer_udp_port,
                "reason": None if result.reason is None else result.reason.value,
            },
        )
    )


def _relay_refused(session: PunchSessionRecord, worker_id: str, budget: str) -> Outcome:
    """Refusals are counted on the session and logged only for its first: a flood of
    relayed datagrams stays cheap, and the logs stay readable."""
    whose = "this session" if budget == "session" else f"sessions initiated by {session.initiator}"
    detail = f"relay rate limit reached for {whose}"
    event = None
    if session.relay_refused == 1:
        event = Event(
            RendezvousEvent.RELAY_RATE_LIMITED,
            f"Session {session.session_id}: relay refused ({detail})",
            logging.WARNING,
            {
                "worker_id": worker_id,
                "session_id": session.session_id,
                "initiator": session.initiator,
                "budget": budget,
            },
        )
    return Outcome(reply=ErrorMessage(ErrorCode.RELAY_RATE_LIMITED.value, detail), event=event)


def _relay(
    sessions: PunchSessionTable, worker_id: str, datagram: RelayDatagram, now: float
) -> Outcome:
    session = sessions.get(datagram.session_id)
    peer = None if session is None else session.peer_of(worker_id)
    if session is None or peer is None:
        return _rejection(
            worker_id,
            ProtocolError(ErrorCode.UNKNOWN_SESSION, "no such session for you", datagram.TYPE),
        )
    if not session.allow_relay(len(datagram.data), now, sessions.limits):
        return _relay_refused(session, worker_id, "session")
    # Whichever member sends it, the session's initiator pays: a worker answering on a
    # session someone else made spends that someone's budget, not its own connection's.
    if not sessions.relay_budgets.allow(session.initiator, len(datagram.data), now):
        session.relay_refused += 1
        return _relay_refused(session, worker_id, "initiator")
    return Outcome(deliveries=(Delivery(peer, datagram),))


def decode_frame(worker_id: str, frame: str) -> ClientMessage | Outcome:
    """The frame's message, or the outcome of refusing it."""
    try:
        return decode_client_message(frame)
    except ProtocolError as error:
        return _rejection(worker_id, error)


def handle_text_frame(
    registry: Registry,
    sessions: PunchSessionTable,
    worker_id: str,
    connection_id: int,
    frame: str,
    now: float,
) -> Outcome:
    """`decode_frame` then `handle_message`, for a registry that needs no look-ups."""
    message = decode_frame(worker_id, frame)
    if isinstance(message, Outcome):
        return message
    return handle_message(registry, sessions, worker_id, connection_id, message, now)


def handle_message(
    registry: Registry,
    sessions: PunchSessionTable,
    worker_id: str,
    connection_id: int,
    message: ClientMessage,
    now: float,
    peers: RecordLookup | None = None,
    policy: IntroductionPolicy | None = None,
    candidates: Page | None = None,
) -> Outcome:
    """A decoded message; `peers` finds introduction peers (default: the registry);
    `policy` says who may reach whom (None: everyone); `candidates`: the page of workers
    a list_peers asks about, fetched from the store (default: from the registry)."""
    if not registry.is_current(worker_id, connection_id):
        replaced = ProtocolError(
            ErrorCode.CONNECTION_REPLACED,
            "a newer connection for this worker_id replaced this one",
            message.TYPE,
        )
        return _rejection(worker_id, replaced)

    match message:
        case UpdateUdpEndpoint():
            update = registry.update_udp_endpoint(worker_id, connection_id, message, now)
            previous = update.previous
            return Outcome(
                changed_record=update.record,
                reply=UdpEndpointAck(AckStatus.SUCCESS),
                event=Event(
                    RendezvousEvent.UDP_ENDPOINT_UPDATED,
                    f"Worker {worker_id} UDP endpoint is {message.udp_ip}:{message.udp_port}",
                    fields={
                        "worker_id": worker_id,
                        "udp_ip": message.udp_ip,
                        "udp_port": message.udp_port,
                        "mapping": message.mapping.value if message.mapping else None,
                        "local_port": message.local_port,
                        "changed": update.changed,
                        "previous_udp_ip": previous.ip if previous else None,
                        "previous_udp_port": previous.port if previous else None,
                    },
                ),
            )
        case RegisterPublicIp():
            changed = registry.register_public_ip(worker_id, connection_id, message.ip)
            return Outcome(
                changed_record=changed,
                event=Event(
                    RendezvousEvent.PUBLIC_IP_REGISTERED,
                    f"Worker {worker_id} reported public IP {message.ip}",
                    fields={"worker_id": worker_id, "public_ip": message.ip},
                ),
            )
        case EchoRequest():
            return Outcome(reply=EchoResponse.for_request(message, worker_id))
        case ConnectRequest():
            return introduce(
                registry if peers is None else peers,
                sessions,
                worker_id,
                message.peer_id,
                now,
                policy,
                message.request_id,
            )
        case ListPeers():
            asker = registry.get(worker_id)
            assert asker is not None  # is_current() checked it above
            page = (
                candidates
                if candidates is not None
                else registry.page(message.limit, message.cursor)
            )
            listing = peers_page(policy or ALLOW_ALL, asker, page)
            return Outcome(reply=dataclasses.replace(listing, request_id=message.request_id))
        case PunchResult():
            return _punch_result(sessions, worker_id, message)
        case RelayDatagram():
            return _relay(sessions, worker_id, message, now)
        case AuthProof():
            # The proof answers the challenge before registration, and only then.
            return _rejection(
                worker_id,
                ProtocolError(
                    ErrorCode.KEY_PROOF_INVALID,
                    "this connection already proved its key: no auth_proof is expected now",
                    message.TYPE,
                ),
            )
        case GetMyDetails():
            record = registry.get(worker_id)
            assert record is not None  # is_current() checked it above
            endpoint = record.udp_endpoint
            return Outcome(
                reply=MyDetailsResponse(
                    worker_id=worker_id,
                    registered_ip=record.registered_ip,
                    registered_port=record.observed_port,
                    udp_ip=endpoint.ip if endpoint else None,
                    udp_port=endpoint.port if endpoint else None,
                )
            )
