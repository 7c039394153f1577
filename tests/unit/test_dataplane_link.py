"""Two PeerLinks wired in memory on a virtual clock: the handshake, the pin checked on both
sides (a third key refused either way), garbage and replayed packets ignored, a datagram,
a stream's bytes, keep-alives and close."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from aioquic.quic.events import DatagramFrameReceived, StreamDataReceived
from holepunch_protocol import MAX_QUIC_PACKET_BYTES
from holepunch_worker.dataplane.link import (
    KEY_MISMATCH,
    Authenticated,
    Closed,
    LinkEvent,
    LinkSettings,
    PeerLink,
    QuicEventReceived,
    is_client,
)
from holepunch_worker.dataplane.tls_identity import certificate_matches_pin, self_signed
from holepunch_worker.identity import WorkerKey

KEY_A, KEY_B, KEY_OTHER = WorkerKey.generate(), WorkerKey.generate(), WorkerKey.generate()
ONE_WAY = 0.005


@dataclass
class Pair:
    """Links a (client: "a" < "b") and b, delivering each packet ONE_WAY later."""

    a: PeerLink
    b: PeerLink
    now: float = 0.0
    events: dict[str, list[LinkEvent]] = field(default_factory=lambda: {"a": [], "b": []})
    sent: dict[str, list[bytes]] = field(default_factory=lambda: {"a": [], "b": []})

    @classmethod
    def make(cls, pin_in_a: str = KEY_B.public_key, pin_in_b: str = KEY_A.public_key) -> Pair:
        a = PeerLink(local_id="a", peer_id="b", key=KEY_A, pinned_key=pin_in_a, now=0.0)
        b = PeerLink(local_id="b", peer_id="a", key=KEY_B, pinned_key=pin_in_b, now=0.0)
        return cls(a, b)

    def link(self, who: str) -> PeerLink:
        return self.a if who == "a" else self.b

    def run(self, until: float, *, drop: bool = False) -> None:
        """Exchange packets and fire timers until `until` (virtual seconds)."""
        in_flight: list[tuple[float, str, bytes]] = []
        while True:
            for who, other in (("a", "b"), ("b", "a")):
                for packet in self.link(who).packets_to_send(self.now):
                    assert len(packet) <= MAX_QUIC_PACKET_BYTES
                    self.sent[who].append(packet)
                    if not drop:
                        in_flight.append((self.now + ONE_WAY, other, packet))
            deadlines = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t]
            times = [t for t, _, _ in in_flight] + deadlines
            if not times or min(times) > until:
                self.now = until
                return
            self.now = max(self.now, min(times))
            for item in sorted(in_flight, key=lambda i: i[0]):
                if item[0] <= self.now:
                    in_flight.remove(item)
                    self.events[item[1]] += self.link(item[1]).packet_received(item[2], self.now)
            for who in ("a", "b"):
                self.events[who] += self.link(who).timer(self.now)


def test_the_smaller_worker_id_is_the_client() -> None:
    assert is_client("a", "b") and not is_client("b", "a")
    pair = Pair.make()
    assert pair.a.is_client and not pair.b.is_client


def test_handshake_authenticates_both_sides_by_their_pinned_keys() -> None:
    pair = Pair.make()
    pair.run(1.0)
    assert pair.events["a"] == [Authenticated()] and pair.events["b"] == [Authenticated()]
    assert pair.a.authenticated and pair.b.authenticated


def test_a_client_with_a_third_key_is_refused_by_the_server() -> None:
    pair = Pair.make(pin_in_b=KEY_OTHER.public_key)  # b expected someone else at "a"
    pair.run(1.0)
    assert Closed(KEY_MISMATCH, authenticated=False, by_peer=False) in pair.events["b"]
    assert not any(isinstance(e, QuicEventReceived) for e in pair.events["b"])
    # The client is told why, and never delivers anything either.
    assert pair.a.closed and pair.a.close_reason == KEY_MISMATCH
    assert Closed(KEY_MISMATCH, authenticated=True, by_peer=True) in pair.events["a"]


def test_a_server_with_a_third_key_is_refused_by_the_client() -> None:
    pair = Pair.make(pin_in_a=KEY_OTHER.public_key)
    pair.run(1.0)
    assert pair.events["a"] == [Closed(KEY_MISMATCH, authenticated=False, by_peer=False)]
    assert pair.b.closed and pair.b.close_reason == KEY_MISMATCH


def test_stream_bytes_and_a_datagram_arrive_only_after_authentication() -> None:
    pair = Pair.make()
    pair.run(1.0)
    stream_id = pair.a.quic.get_next_available_stream_id()
    pair.a.quic.send_stream_data(stream_id, b"hello", end_stream=True)
    pair.a.quic.send_datagram_frame(b"\x00ping")
    pair.run(2.0)
    received = [e.event for e in pair.events["b"] if isinstance(e, QuicEventReceived)]
    assert StreamDataReceived(data=b"hello", end_stream=True, stream_id=stream_id) in received
    assert DatagramFrameReceived(data=b"\x00ping") in received


def test_garbage_and_replayed_packets_are_ignored() -> None:
    pair = Pair.make()
    pair.run(1.0)
    for packet in pair.sent["a"]:  # every packet a ever sent, again
        assert pair.b.packet_received(packet, pair.now) == []
    assert pair.b.packet_received(b"\x00" * 50, pair.now) == []
    assert pair.b.packet_received(b"\xc0garbage" * 20, pair.now) == []
    pair.a.quic.send_datagram_frame(b"\x00after")
    pair.run(2.0)
    assert QuicEventReceived(DatagramFrameReceived(data=b"\x00after")) in pair.events["b"]


def test_keepalives_keep_an_idle_connection_open_past_the_idle_timeout() -> None:
    settings = LinkSettings()
    pair = Pair.make()
    pair.run(3 * settings.idle_timeout)
    assert pair.a.authenticated and pair.b.authenticated
    assert not any(isinstance(e, Closed) for e in pair.events["a"] + pair.events["b"])


def test_a_silent_peer_times_out() -> None:
    pair = Pair.make()
    pair.run(1.0)
    pair.run(2 * LinkSettings().idle_timeout, drop=True)
    assert pair.a.closed and pair.b.closed


def test_close_tells_the_peer_the_reason() -> None:
    pair = Pair.make()
    pair.run(1.0)
    assert pair.a.close("shutdown") == [Closed("shutdown", authenticated=True, by_peer=False)]
    pair.run(2.0)
    assert Closed("shutdown", authenticated=True, by_peer=True) in pair.events["b"]
    assert pair.a.packet_received(b"x", pair.now) == [] and pair.a.timer(pair.now) == []


def test_certificate_pin() -> None:
    certificate = self_signed(KEY_A, "a")
    assert certificate_matches_pin(certificate, KEY_A.public_key)
    assert not certificate_matches_pin(certificate, KEY_B.public_key)
    assert not certificate_matches_pin(certificate, "not-a-key")
    assert not certificate_matches_pin(None, KEY_A.public_key)


def test_settings_refuse_a_keepalive_longer_than_the_idle_timeout() -> None:
    with pytest.raises(ValueError, match="keepalive"):
        LinkSettings(idle_timeout=5, keepalive=10)


def test_the_largest_datagram_payload_fits_one_packet() -> None:
    from holepunch_worker.dataplane.plane import MAX_DATAGRAM_PAYLOAD

    pair = Pair.make()
    pair.run(1.0)
    frame = b"\x00" + b"d" * MAX_DATAGRAM_PAYLOAD
    pair.a.quic.send_datagram_frame(frame)
    pair.run(2.0)
    assert QuicEventReceived(DatagramFrameReceived(data=frame)) in pair.events["b"]
