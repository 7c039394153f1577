"""A small rendezvous for the worker's punching tests: a real `websockets` server that
challenges a worker that names a key (and records the key it answers with, unverified:
the real rendezvous's verification has its own tests), acknowledges endpoints, introduces workers (with addresses and `relay_first` a test can
choose), forwards relayed datagrams unopened, and records punch results."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from holepunch_protocol import (
    NONCE_BYTES,
    PUBLIC_KEY_HEADER,
    SECRET_BYTES,
    SESSION_ID_BYTES,
    AckStatus,
    AuthChallenge,
    AuthProof,
    ConnectRequest,
    ErrorMessage,
    MappingBehaviour,
    PeerIntroduction,
    PeerRole,
    ProtocolError,
    PunchResult,
    RelayDatagram,
    UdpEndpointAck,
    UpdateUdpEndpoint,
    b64url_encode,
    decode_client_message,
    encode_message,
)
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["FakeRendezvous", "FakeSession", "fake_rendezvous"]

Address = tuple[str, int]
# (worker being told, its peer) -> the address to give it for the peer, or None for the real one
AddressRule = Callable[[str, str], Address | None]


@dataclass
class FakeSession:
    session_id: str
    initiator: str
    responder: str
    relayed: int = 0

    def peer_of(self, worker_id: str) -> str:
        return self.responder if worker_id == self.initiator else self.initiator


@dataclass
class FakeRendezvous:
    port: int = 0
    relay_first: bool = False
    relay_enabled: bool = True
    address_rule: AddressRule = lambda to, peer: None
    endpoints: dict[str, UpdateUdpEndpoint] = field(default_factory=dict)
    connections: dict[str, ServerConnection] = field(default_factory=dict)
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    results: list[tuple[str, PunchResult]] = field(default_factory=list)
    connect_requests: list[tuple[str, str]] = field(default_factory=list)
    public_keys: dict[str, str] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def handler(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        worker_id = websocket.request.path.rsplit("/", 1)[-1]
        self.connections[worker_id] = websocket
        try:
            if websocket.request.headers.get(PUBLIC_KEY_HEADER) is not None:
                nonce = b64url_encode(os.urandom(NONCE_BYTES))
                await websocket.send(encode_message(AuthChallenge(nonce=nonce)))
            async for frame in websocket:
                try:
                    message = decode_client_message(frame)
                except ProtocolError as error:
                    await websocket.send(encode_message(ErrorMessage.from_error(error)))
                    continue
                await self._received(worker_id, message)
        except ConnectionClosed:
            pass
        finally:
            if self.connections.get(worker_id) is websocket:
                del self.connections[worker_id]
                self.endpoints.pop(worker_id, None)
            await self._notify()

    async def _received(self, worker_id: str, message: object) -> None:
        if isinstance(message, AuthProof):
            self.public_keys[worker_id] = message.public_key
        elif isinstance(message, UpdateUdpEndpoint):
            self.endpoints[worker_id] = message
            await self.connections[worker_id].send(
                encode_message(UdpEndpointAck(AckStatus.SUCCESS))
            )
        elif isinstance(message, ConnectRequest):
            self.connect_requests.append((worker_id, message.peer_id))
            if message.peer_id not in self.endpoints:
                error = ErrorMessage(code="peer_not_found", detail=message.peer_id)
                await self.connections[worker_id].send(encode_message(error))
            else:
                await self.introduce(worker_id, message.peer_id)
        elif isinstance(message, RelayDatagram):
            session = self.sessions.get(message.session_id)
            if session is None or not self.relay_enabled:
                return
            peer = self.connections.get(session.peer_of(worker_id))
            if peer is not None:
                session.relayed += 1
                await peer.send(encode_message(message))
        elif isinstance(message, PunchResult):
            self.results.append((worker_id, message))
        await self._notify()

    async def introduce(self, initiator: str, responder: str) -> FakeSession:
        session = FakeSession(os.urandom(SESSION_ID_BYTES).hex(), initiator, responder)
        self.sessions[session.session_id] = session
        secret = os.urandom(SECRET_BYTES).hex()
        for to, peer, role in (
            (initiator, responder, PeerRole.INITIATOR),
            (responder, initiator, PeerRole.RESPONDER),
        ):
            endpoint = self.endpoints[peer]
            address = self.address_rule(to, peer) or (endpoint.udp_ip, endpoint.udp_port)
            intro = PeerIntroduction(
                session_id=session.session_id,
                peer_id=peer,
                peer_udp_ip=address[0],
                peer_udp_port=address[1],
                peer_mapping=endpoint.mapping or MappingBehaviour.UNKNOWN,
                secret=secret,
                role=role,
                relay_first=self.relay_first,
                peer_public_key=self.public_keys.get(peer),
            )
            await self.connections[to].send(encode_message(intro))
        return session

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        async def until() -> None:
            async with self.changed:
                await self.changed.wait_for(condition)

        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise AssertionError(f"fake rendezvous: no {what} within {timeout} s") from None

    async def wait_registered(self, *worker_ids: str, timeout: float = 10.0) -> None:
        await self.wait_until(
            lambda: all(w in self.endpoints for w in worker_ids), timeout, f"endpoints {worker_ids}"
        )

    def results_of(self, worker_id: str) -> list[PunchResult]:
        return [result for who, result in self.results if who == worker_id]

    async def close_connections(self) -> None:
        for websocket in list(self.connections.values()):
            await websocket.close(1001, "going away")


@asynccontextmanager
async def fake_rendezvous(**options: object) -> AsyncIterator[FakeRendezvous]:
    fake = FakeRendezvous(**options)  # type: ignore[arg-type]
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.server = server
        fake.port = _port(server)
        yield fake


def _port(server: Server) -> int:
    port: int = next(iter(server.sockets)).getsockname()[1]
    return port
