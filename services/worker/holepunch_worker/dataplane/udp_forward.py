"""UDP_FORWARDS and EXPOSE_UDP_PORTS: UDP between a local port here and a peer's local port.

Both ends travel as QUIC datagrams on `DatagramChannel.UDP_FORWARD`, each starting with
this header (after the channel byte), big-endian:

    kind (1 byte) | flow id (4 bytes) | port (2 bytes) | the UDP payload

- `REQUEST`: from the forwarding worker; `port` is the peer's UDP port it is for, the
  flow id names the local sender (chosen by the forwarding worker, unique among its own).
- `REPLY`: from the exposing worker, with the request's flow id and port, so the reply
  finds its local sender.

The forwarding end listens on a loopback UDP port; each local sender address is a flow.
The exposing end accepts requests only for EXPOSE_UDP_PORTS, and sends each peer flow's
datagrams from a UDP socket of its own (connected to 127.0.0.1:port), whose answers go
back as replies. Flows on both ends are capped and expire when idle (flow_table.py).
Datagrams are dropped, never queued for long: a flow waiting for its peer connection or
its socket holds at most a few. Drops are counted and logged at most once per interval.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from holepunch_logging import LogThrottle, WorkerEvent, log_event

from holepunch_worker.config import ForwardSpec, join_host_port
from holepunch_worker.dataplane.flow_table import FlowTable
from holepunch_worker.dataplane.interface import (
    DEFAULT_CONNECT_TIMEOUT_SEC,
    DatagramChannel,
    DataPlane,
    DataPlaneError,
    PeerUnavailable,
)

__all__ = [
    "HEADER_BYTES",
    "UdpForwardHeader",
    "UdpForwardKind",
    "UdpForwardLimits",
    "UdpForwarding",
    "decode_udp_forward",
    "encode_udp_forward",
]

_HEADER = struct.Struct("!BIH")
HEADER_BYTES = _HEADER.size
MAX_FLOW_ID = 0xFFFFFFFF


class UdpForwardKind(enum.IntEnum):
    REQUEST = 0
    REPLY = 1


@dataclass(frozen=True, slots=True)
class UdpForwardHeader:
    kind: UdpForwardKind
    flow_id: int
    port: int


def encode_udp_forward(header: UdpForwardHeader, payload: bytes) -> bytes:
    return _HEADER.pack(header.kind, header.flow_id, header.port) + payload


def decode_udp_forward(data: bytes) -> tuple[UdpForwardHeader, bytes]:
    """Raises ValueError on a short datagram, an unknown kind or port 0."""
    if len(data) < HEADER_BYTES:
        raise ValueError(f"UDP forward datagram of {len(data)} bytes, shorter than its header")
    kind, flow_id, port = _HEADER.unpack_from(data)
    if kind not in _KINDS:
        raise ValueError(f"unknown UDP forward kind {kind}")
    if port == 0:
        raise ValueError("UDP forward datagram for port 0")
    return UdpForwardHeader(UdpForwardKind(kind), flow_id, port), data[HEADER_BYTES:]


_KINDS = frozenset(UdpForwardKind)


@dataclass(frozen=True, slots=True)
class UdpForwardLimits:
    # Like a NAT's UDP timeout: a flow with no datagram either way for this long is gone.
    idle_timeout: float = 60.0
    # Local senders per forward, and peer flows per exposing worker (all peers).
    max_flows_per_forward: int = 256
    max_exposed_flows: int = 1024
    max_exposed_flows_per_peer: int = 256
    # Datagrams held while a peer connection or a flow's socket is being made.
    max_waiting: int = 16
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC
    log_interval: float = 10.0


Address = tuple[str, int]


class _ForwardListener(asyncio.DatagramProtocol):
    """One UDP_FORWARDS entry's loopback socket: local senders in, replies out."""

    def __init__(
        self,
        spec: ForwardSpec,
        flows: FlowTable[Address, int],
        received: Callable[[_ForwardListener, bytes, Address], None],
    ) -> None:
        self.spec = spec
        self.flows = flows  # local sender -> flow id
        self._received = received
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._received(self, data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for a local sender that went away: its flow expires


@dataclass(eq=False)
class _ExposedFlow(asyncio.DatagramProtocol):
    """A peer's flow to an exposed port: its own socket, connected to 127.0.0.1:port."""

    peer_id: str
    flow_id: int
    port: int
    replied: Callable[[_ExposedFlow, bytes], None]
    transport: asyncio.DatagramTransport | None = None
    waiting: list[bytes] = field(default_factory=list)
    closed: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replied(self, data)

    def error_received(self, exc: Exception) -> None:
        pass  # nothing listens on the port (ICMP port unreachable): as UDP would, drop

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UdpForwarding:
    """Both ends on one worker: its UDP_FORWARDS listeners and its EXPOSE_UDP_PORTS.
    Register `datagram_received` with the data plane for `DatagramChannel.UDP_FORWARD`."""

    def __init__(
        self,
        data_plane: DataPlane,
        worker_id: str,
        logger: logging.Logger,
        *,
        exposed_ports: frozenset[int] = frozenset(),
        limits: UdpForwardLimits = UdpForwardLimits(),
    ) -> None:
        self._data_plane = data_plane
        self._worker_id = worker_id
        self._logger = logger
        self._exposed_ports = exposed_ports
        self._limits = limits
        self._listeners: list[_ForwardListener] = []
        # Forwarding end: flow id -> its listener and local sender.
        self._flow_owner: dict[int, tuple[_ForwardListener, Address]] = {}
        self._flow_ids = itertools.count(1)
        # Exposing end: (peer, flow id) -> its socket.
        self._exposed: FlowTable[tuple[str, int], _ExposedFlow] = FlowTable(
            max_flows=limits.max_exposed_flows, idle_timeout=limits.idle_timeout
        )
        self._exposed_per_peer: Counter[str] = Counter()
        self._waiting_for_peer: dict[str, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dropped: Counter[str] = Counter()
        self._drop_log = LogThrottle(limits.log_interval)
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def dropped(self) -> dict[str, int]:
        """Datagrams dropped so far, by reason."""
        return dict(self._dropped)

    def exposed_flow_count(self) -> int:
        return len(self._exposed)

    async def add_forward(self, spec: ForwardSpec, port: int | None = None) -> Address:
        """Listen for one UDP_FORWARDS entry (on `port` instead of the spec's: 0 picks one,
        for tests); the address bound."""
        loop = asyncio.get_running_loop()
        transport, listener = await loop.create_datagram_endpoint(
            lambda: _ForwardListener(
                spec,
                FlowTable(
                    max_flows=self._limits.max_flows_per_forward,
                    idle_timeout=self._limits.idle_timeout,
                ),
                self._local_datagram,
            ),
            local_addr=(spec.listen_host, spec.listen_port if port is None else port),
        )
        self._listeners.append(listener)
        host, bound_port = transport.get_extra_info("sockname")[:2]
        self._ensure_sweeper()
        log_event(
            self._logger,
            WorkerEvent.PROXY_LISTENING,
            f"UDP forward listening on {join_host_port(host, bound_port)} to "
            f"{spec.peer_id}:{spec.peer_port}",
            worker_id=self._worker_id,
            kind="udp_forward",
            listen=join_host_port(host, bound_port),
            peer_id=spec.peer_id,
            port=spec.peer_port,
        )
        return str(host), int(bound_port)

    async def close(self) -> None:
        for task in [*self._tasks, *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sweeper is not None:
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for listener in self._listeners:
            if listener.transport is not None:
                listener.transport.close()
        for flow in self._exposed.values():
            flow.close()

    # ------------------------------------------------------------------ both ends

    def datagram_received(self, peer_id: str, payload: bytes) -> None:
        """A UDP_FORWARD datagram from a peer (the channel byte already taken off)."""
        try:
            header, data = decode_udp_forward(payload)
        except ValueError:
            self._drop("malformed", peer_id=peer_id)
            return
        if header.kind is UdpForwardKind.REQUEST:
            self._request(peer_id, header, data)
        else:
            self._reply(peer_id, header, data)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="udp-forward-sweeper")

    async def _sweep(self) -> None:
        """Close idle flows: checked a few times per idle timeout."""
        while True:
            await asyncio.sleep(self._limits.idle_timeout / 4)
            self.expire_idle(self._now())

    def expire_idle(self, now: float) -> None:
        """Forget the flows idle at `now` on both ends, closing their sockets."""
        for listener in self._listeners:
            self._expire_local(listener.flows.expire(now))
        self._expire_exposed(self._exposed.expire(now))

    # ------------------------------------------------------------------ forwarding end

    def _local_datagram(self, listener: _ForwardListener, data: bytes, sender: Address) -> None:
        flows = listener.flows
        now = self._now()
        flow_id = flows.get(sender, now)
        if flow_id is None:
            flow_id = next(self._flow_ids) & MAX_FLOW_ID
            expired = flows.add(sender, flow_id, now)
            if expired is None:
                self._drop("too_many_flows", peer_id=listener.spec.peer_id)
                return
            self._expire_local(expired)
            self._flow_owner[flow_id] = (listener, sender)
        header = UdpForwardHeader(UdpForwardKind.REQUEST, flow_id, listener.spec.peer_port)
        self._send_to_peer(listener.spec.peer_id, encode_udp_forward(header, data))

    def _expire_local(self, expired: list[tuple[Address, int]]) -> None:
        for _sender, flow_id in expired:
            self._flow_owner.pop(flow_id, None)

    def _reply(self, peer_id: str, header: UdpForwardHeader, data: bytes) -> None:
        owner = self._flow_owner.get(header.flow_id)
        if owner is None:
            self._drop("unknown_flow", peer_id=peer_id)
            return
        listener, sender = owner
        if listener.spec.peer_id != peer_id or listener.spec.peer_port != header.port:
            self._drop("unknown_flow", peer_id=peer_id)
            return
        listener.flows.get(sender, self._now())
        if listener.transport is not None:
            listener.transport.sendto(data, sender)

    def _send_to_peer(self, peer_id: str, datagram: bytes) -> None:
        """Send, connecting first when there is no connection to the peer yet."""
        waiting = self._waiting_for_peer.get(peer_id)
        if waiting is None:
            try:
                self._data_plane.send_datagram(peer_id, DatagramChannel.UDP_FORWARD, datagram)
                return
            except ValueError:
                self._drop("too_large", peer_id=peer_id)
                return
            except PeerUnavailable:
                waiting = self._waiting_for_peer[peer_id] = []
                self._spawn(self._connect_then_send(peer_id))
        if len(waiting) < self._limits.max_waiting:
            waiting.append(datagram)
        else:
            self._drop("connecting", peer_id=peer_id)

    async def _connect_then_send(self, peer_id: str) -> None:
        try:
            await self._data_plane.connect(peer_id, timeout=self._limits.connect_timeout)
        except DataPlaneError as error:
            waiting = self._waiting_for_peer.pop(peer_id, [])
            self._drop(error.reason, count=len(waiting), peer_id=peer_id)
            return
        for datagram in self._waiting_for_peer.pop(peer_id, []):
            self._send_once(peer_id, datagram)

    # ------------------------------------------------------------------ exposing end

    def _request(self, peer_id: str, header: UdpForwardHeader, data: bytes) -> None:
        if header.port not in self._exposed_ports:
            self._drop("port_not_exposed", peer_id=peer_id, port=header.port)
            return
        key = (peer_id, header.flow_id)
        now = self._now()
        flow = self._exposed.get(key, now)
        if flow is not None and flow.port != header.port:
            self._drop("port_changed", peer_id=peer_id, port=header.port)
            return
        if flow is None:
            if self._exposed_per_peer[peer_id] >= self._limits.max_exposed_flows_per_peer:
                self._drop("too_many_flows", peer_id=peer_id, port=header.port)
                return
            flow = _ExposedFlow(peer_id, header.flow_id, header.port, self._flow_replied)
            expired = self._exposed.add(key, flow, now)
            if expired is None:
                self._drop("too_many_flows", peer_id=peer_id, port=header.port)
                return
            self._expire_exposed(expired)
            self._exposed_per_peer[peer_id] += 1
            self._ensure_sweeper()
            self._spawn(self._open_flow(flow))
        if flow.transport is not None:
            flow.transport.sendto(data)
        elif len(flow.waiting) < self._limits.max_waiting:
            flow.waiting.append(data)
        else:
            self._drop("connecting", peer_id=peer_id, port=header.port)

    async def _open_flow(self, flow: _ExposedFlow) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: flow, remote_addr=("127.0.0.1", flow.port))
        except OSError:
            self._drop("socket_failed", count=len(flow.waiting) or 1, peer_id=flow.peer_id)
            self._forget_exposed((flow.peer_id, flow.flow_id))
            return
        if flow.closed:  # expired or shut down while the socket was being made
            flow.close()
            return
        assert flow.transport is not None
        for data in flow.waiting:
            flow.transport.sendto(data)
        flow.waiting.clear()

    def _flow_replied(self, flow: _ExposedFlow, data: bytes) -> None:
        self._exposed.get((flow.peer_id, flow.flow_id), self._now())
        header = UdpForwardHeader(UdpForwardKind.REPLY, flow.flow_id, flow.port)
        self._send_once(flow.peer_id, encode_udp_forward(header, data))

    def _expire_exposed(self, expired: list[tuple[tuple[str, int], _ExposedFlow]]) -> None:
        for (peer_id, _flow_id), flow in expired:
            self._exposed_per_peer[peer_id] -= 1
            if self._exposed_per_peer[peer_id] <= 0:
                del self._exposed_per_peer[peer_id]
            flow.close()

    def _forget_exposed(self, key: tuple[str, int]) -> None:
        flow = self._exposed.remove(key)
        if flow is not None:
            self._expire_exposed([(key, flow)])

    # ------------------------------------------------------------------ helpers

    def _send_once(self, peer_id: str, datagram: bytes) -> None:
        try:
            self._data_plane.send_datagram(peer_id, DatagramChannel.UDP_FORWARD, datagram)
        except ValueError:
            self._drop("too_large", peer_id=peer_id)
        except PeerUnavailable:
            self._drop("peer_unavailable", peer_id=peer_id)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop(self, reason: str, *, count: int = 1, **fields: Any) -> None:
        if count <= 0:
            return
        self._dropped[reason] += count
        unlogged = self._drop_log.due(self._now())
        if unlogged is None:
            return
        log_event(
            self._logger,
            WorkerEvent.UDP_FORWARD_DROPPED,
            f"dropped {count} UDP forward datagram(s): {reason} "
            f"({sum(self._dropped.values())} dropped so far)",
            level=logging.WARNING,
            worker_id=self._worker_id,
            reason=reason,
            count=count,
            unlogged=unlogged,
            total=sum(self._dropped.values()),
            **fields,
        )
