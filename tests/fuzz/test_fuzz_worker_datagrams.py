"""Property-based fuzzing of the worker's UDP datagram handling, with no sockets.

Whatever arrives on the worker's one socket, nothing raises; only a well-formed ping is
answered (with a pong no larger than it); and random or forged bytes never move a punch
session's peer address nor deliver anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from typing import Any

from aioice import stun
from holepunch_protocol import (
    SECRET_BYTES,
    SESSION_ID_BYTES,
    MappingBehaviour,
    PeerIntroduction,
    PeerKind,
    PeerRole,
    encode_ping,
    seal_peer_datagram,
)
from holepunch_worker.punch import PunchSessions, PunchTimings
from holepunch_worker.udp import WorkerDatagramProtocol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Examples per property and deadline: the fuzz profile (tests/fuzz/profiles.py).
FUZZ = settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
LOGGER = logging.getLogger("tests.fuzz")
PEER = ("203.0.113.7", 40000)
SESSION_ID = "ab" * SESSION_ID_BYTES
SECRET = "cd" * SECRET_BYTES


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5000) if name == "sockname" else default

    def close(self) -> None:
        pass


stun_shaped = st.builds(
    lambda kind, length, body: struct.pack("!HHI", kind, length, stun.COOKIE) + body,
    st.integers(0, 0x3FFF),
    st.integers(0, 200),
    st.binary(max_size=120),
)
peer_shaped = st.builds(lambda body: b"HPX1" + body, st.binary(max_size=120))
ping_shaped = st.builds(lambda token: encode_ping(b"") + token, st.binary(max_size=80))
datagrams = st.one_of(st.binary(max_size=300), stun_shaped, peer_shaped, ping_shaped)


@FUZZ
@given(st.lists(datagrams, max_size=20))
def test_the_socket_handler_never_raises_and_only_answers_pings(batch: list[bytes]) -> None:
    asyncio.run(_feed_socket_handler(batch))


async def _feed_socket_handler(batch: list[bytes]) -> None:
    protocol = WorkerDatagramProtocol(LOGGER, "fuzz-worker")
    transport = RecordingTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    handed_to_sessions: list[bytes] = []
    protocol.peer_handler = lambda data, source: handed_to_sessions.append(data)
    for datagram in batch:
        protocol.datagram_received(datagram, PEER)
    for reply, addr in transport.sent:
        assert addr == PEER and reply.startswith(b"HOLEPUNCH-PONG:")
    assert all(d.startswith(b"HPX1") for d in handed_to_sessions)
    assert protocol.counters.stun_responses == 0  # no transaction of ours was pending


def introduced_sessions() -> PunchSessions:
    sessions = PunchSessions(PunchTimings())
    sessions.introduce(
        PeerIntroduction(
            session_id=SESSION_ID,
            peer_id="peer",
            peer_udp_ip=PEER[0],
            peer_udp_port=PEER[1],
            peer_mapping=MappingBehaviour.ENDPOINT_INDEPENDENT,
            secret=SECRET,
            role=PeerRole.INITIATOR,
        ),
        now=0.0,
    )
    return sessions


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.one_of(
                peer_shaped,
                st.binary(max_size=200),
                # Right session id, wrong key: forged.
                st.builds(
                    lambda kind, seq, payload: seal_peer_datagram(
                        os.urandom(SECRET_BYTES), kind, bytes.fromhex(SESSION_ID), seq, payload
                    ),
                    st.sampled_from(list(PeerKind)),
                    st.integers(0, 2**64 - 1),
                    st.binary(max_size=40),
                ),
            ),
            st.tuples(st.sampled_from(["198.51.100.9", PEER[0]]), st.integers(1, 65535)),
        ),
        max_size=15,
    )
)
def test_forged_or_random_datagrams_never_move_or_feed_a_session(
    batch: list[tuple[bytes, tuple[str, int]]],
) -> None:
    sessions = introduced_sessions()
    before = sessions.status(now=0.1)
    for data, addr in batch:
        actions = sessions.datagram_received(data, addr, now=0.2)
        assert not any(type(action).__name__ in ("Deliver", "Report") for action in actions)
    session = sessions.active()[0]
    after = sessions.status(now=0.1)
    assert session.state.value == "punching"
    assert before["sessions"][0]["peer_address"] == after["sessions"][0]["peer_address"]
