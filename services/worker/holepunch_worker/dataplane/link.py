"""One QUIC connection with one introduced peer, sans-I/O: packets in, packets out, timers,
and the events an asyncio layer acts on.

- **Role**: the worker with the smaller worker_id is the QUIC client; both sides know both
  ids from the introduction, so they agree without a message. The client starts the
  handshake when the link is made (the data plane makes it once the punch session has a
  path).
- **Mutual TLS pinned to the introduced key**: each side presents a self-signed
  certificate of its worker key (tls_identity.py); the server asks for the client's
  (aioquic's `tls.Context._request_client_certificate`, set by `_MutualTlsConnection`
  where the Context is made). aioquic checks each CertificateVerify (the peer holds the
  key in its certificate) but, with `verify_mode=CERT_NONE`, no chain: the pin replaces
  it. On `HandshakeCompleted`, before any stream or datagram event is handed on, the
  peer's certificate key must equal the key the rendezvous introduced; otherwise the
  connection is closed with reason `key_mismatch` (the peer sees the same reason).
- **One fixed address**: the packets travel inside the punch session's sealed datagrams,
  which pick the path; QUIC sees `PEER_ADDRESS` throughout, so a path change underneath
  is invisible to it (no migration, no path validation).
- **Keep-alive**: while nothing arrives for `keepalive` seconds, a PING every `keepalive`
  (the peer's ACK is traffic), so the QUIC idle timeout only fires when the peer is gone.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass

from aioquic._buffer import Buffer, BufferReadError
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    HandshakeCompleted,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicPacketType, pull_quic_header
from holepunch_protocol import MAX_QUIC_PACKET_BYTES

from holepunch_worker.dataplane.tls_identity import certificate_matches_pin, self_signed
from holepunch_worker.identity import WorkerKey

__all__ = [
    "ALPN",
    "KEY_MISMATCH",
    "PEER_ADDRESS",
    "Authenticated",
    "Closed",
    "LinkEvent",
    "LinkSettings",
    "LinkState",
    "PeerLink",
    "QuicEventReceived",
    "is_client",
]

ALPN = "holepunch/1"
PEER_ADDRESS = ("holepunch-peer", 0)
KEY_MISMATCH = "key_mismatch"
# QUIC application error codes this link closes with.
_ERROR_NONE = 0x0
_ERROR_KEY_MISMATCH = 0x1


@dataclass(frozen=True, slots=True)
class LinkSettings:
    idle_timeout: float = 60.0  # QUIC's; keep-alives stop it firing while the peer lives
    keepalive: float = 10.0
    max_datagram_frame_size: int = 65536
    max_stream_data: int = 1024 * 1024
    max_data: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 0 < self.keepalive < self.idle_timeout:
            raise ValueError("keepalive must be positive and shorter than idle_timeout")


class LinkState(enum.StrEnum):
    HANDSHAKING = "handshaking"
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The handshake completed and the peer's key is the pinned one."""


@dataclass(frozen=True, slots=True)
class QuicEventReceived:
    """A stream or datagram event, only ever after `Authenticated`."""

    event: QuicEvent


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over (`reason` `key_mismatch` when either side's pin failed)."""

    reason: str
    authenticated: bool
    by_peer: bool


LinkEvent = Authenticated | QuicEventReceived | Closed
# What the streams and datagrams layer is handed; the rest is QUIC's own business.
_APPLICATION_EVENTS = (DatagramFrameReceived, StreamDataReceived, StreamReset, StopSendingReceived)


def is_client(local_id: str, peer_id: str) -> bool:
    return local_id < peer_id


class _MutualTlsConnection(QuicConnection):
    """A QuicConnection whose server side asks for the client's certificate.

    aioquic makes the TLS Context in `_initialize` (on a server, when the first Initial
    arrives, just before its ClientHello is read), so the flag is set right there."""

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self._is_client:
            self.tls._request_client_certificate = True


class PeerLink:
    def __init__(
        self,
        *,
        local_id: str,
        peer_id: str,
        key: WorkerKey,
        pinned_key: str,
        now: float,
        settings: LinkSettings | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.settings = settings or LinkSettings()
        self.is_client = is_client(local_id, peer_id)
        self.state = LinkState.HANDSHAKING
        self.close_reason: str | None = None
        self._pinned_key = pinned_key
        configuration = QuicConfiguration(
            is_client=self.is_client,
            alpn_protocols=[ALPN],
            verify_mode=ssl.CERT_NONE,  # no chain to check: the pin below decides
            idle_timeout=self.settings.idle_timeout,
            max_datagram_frame_size=self.settings.max_datagram_frame_size,
            max_datagram_size=MAX_QUIC_PACKET_BYTES,
            max_stream_data=self.settings.max_stream_data,
            max_data=self.settings.max_data,
            server_name=peer_id if self.is_client else None,
        )
        configuration.certificate = self_signed(key, local_id)
        configuration.private_key = key.private_key
        self._configuration = configuration
        # A server's connection needs the client's first Initial (its connection id).
        self._quic: QuicConnection | None = None
        self._last_received = now
        self._last_ping = now
        self._ping_ids = 0
        self._close_after_flush: tuple[int, str] | None = None
        if self.is_client:
            self._quic = _MutualTlsConnection(configuration=configuration)
            self._quic.connect(PEER_ADDRESS, now)

    @property
    def quic(self) -> QuicConnection:
        """The connection (a server has one from the client's first Initial on)."""
        if self._quic is None:
            raise RuntimeError("no QUIC connection before the client's first packet")
        return self._quic

    @property
    def authenticated(self) -> bool:
        return self.state is LinkState.AUTHENTICATED

    @property
    def closed(self) -> bool:
        return self.state is LinkState.CLOSED

    # ------------------------------------------------------------------ inputs

    def packet_received(self, packet: bytes, now: float) -> list[LinkEvent]:
        """A packet from the peer; garbage and replays are dropped by QUIC itself."""
        if self.closed:
            return []
        if self._quic is None:
            self._quic = self._server_connection(packet)
            if self._quic is None:
                return []
        self._quic.receive_datagram(packet, PEER_ADDRESS, now)
        self._last_received = now
        return self._events()

    def timer(self, now: float) -> list[LinkEvent]:
        if self.closed or self._quic is None:
            return []
        quic_timer = self.quic.get_timer()
        if quic_timer is not None and now >= quic_timer:
            self.quic.handle_timer(now)
        if self.authenticated and now >= self._keepalive_due():
            self._ping_ids += 1
            self.quic.send_ping(self._ping_ids)
            self._last_ping = now
        return self._events()

    def close(self, reason: str) -> list[LinkEvent]:
        """Close from this side (the peer is told `reason`)."""
        if self.closed:
            return []
        if self._quic is not None:
            self._quic.close(error_code=_ERROR_NONE, reason_phrase=reason)
        return self._closed(reason, by_peer=False)

    # ------------------------------------------------------------------ outputs

    def packets_to_send(self, now: float) -> list[bytes]:
        if self._quic is None:
            return []
        packets = [data for data, _ in self._quic.datagrams_to_send(now)]
        if self._close_after_flush is not None:
            error_code, reason = self._close_after_flush
            self._close_after_flush = None
            self._quic.close(error_code=error_code, reason_phrase=reason)
            packets += [data for data, _ in self._quic.datagrams_to_send(now)]
        return packets

    def next_deadline(self) -> float | None:
        if self.closed or self._quic is None:
            # After a close aioquic's CONNECTION_CLOSE is already out; nothing more is owed.
            return None
        times = [self.quic.get_timer()]
        if self.authenticated:
            times.append(self._keepalive_due())
        return min((t for t in times if t is not None), default=None)

    # ------------------------------------------------------------------ internals

    def _server_connection(self, packet: bytes) -> QuicConnection | None:
        """The server's connection for the client's first Initial; None for anything else
        (a stray or garbage packet before the handshake is dropped)."""
        try:
            header = pull_quic_header(Buffer(data=packet), host_cid_length=8)
        except (BufferReadError, ValueError):
            return None
        if header.packet_type is not QuicPacketType.INITIAL:
            return None
        return _MutualTlsConnection(
            configuration=self._configuration,
            original_destination_connection_id=header.destination_cid,
        )

    def _keepalive_due(self) -> float:
        return max(self._last_received, self._last_ping) + self.settings.keepalive

    def _events(self) -> list[LinkEvent]:
        events: list[LinkEvent] = []
        while (event := self.quic.next_event()) is not None:
            if self.closed:
                continue  # nothing after a close (above all, nothing before the pin)
            if isinstance(event, HandshakeCompleted):
                events += self._handshake_completed()
            elif isinstance(event, ConnectionTerminated):
                events += self._closed(event.reason_phrase or "closed", by_peer=True)
            elif self.authenticated and isinstance(event, _APPLICATION_EVENTS):
                events.append(QuicEventReceived(event))
        return events

    def _handshake_completed(self) -> list[LinkEvent]:
        if not certificate_matches_pin(self.quic.tls._peer_certificate, self._pinned_key):
            if self.is_client:
                # Closing now would replace the client's Finished with Initial and
                # Handshake CONNECTION_CLOSEs, which carry no reason (RFC 9000 10.2.3):
                # send the Finished first, then close in 1-RTT, so the server is told why.
                self._close_after_flush = (_ERROR_KEY_MISMATCH, KEY_MISMATCH)
            else:
                self.quic.close(error_code=_ERROR_KEY_MISMATCH, reason_phrase=KEY_MISMATCH)
            return self._closed(KEY_MISMATCH, by_peer=False)
        self.state = LinkState.AUTHENTICATED
        return [Authenticated()]

    def _closed(self, reason: str, *, by_peer: bool) -> list[LinkEvent]:
        was_authenticated = self.authenticated
        self.state = LinkState.CLOSED
        self.close_reason = reason
        return [Closed(reason, was_authenticated, by_peer)]
