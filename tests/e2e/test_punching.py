"""Hole punching between workers behind real Linux NATs (network namespaces, coturn, the
rendezvous; docs/punching-lab.md).

One lab for the module (`holepunch_devtools.punch_bench.lab_spec`), a worker behind each NAT:

    host1 eim-a, host2 eim-b     behind endpoint-independent NATs (port-restricted filtering)
    host3 sym                    behind a symmetric NAT
    host4 cone                   behind a full-cone (1:1) NAT
    host5 lossy-a, host6 lossy-b behind EIM NATs; nat5's wan link alone has 25 ms delay and
                                 10 % loss each way, so the path between them has a 50 ms
                                 round trip and 10 % loss in each direction

Every test introduces its pair through the rendezvous (`POST /admin/introduce`) and checks
both workers' punch_result on `/debug/sessions`, an echo over the resulting path
(`POST /peers/{id}/echo`), and the workers' own `/status` and events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from holepunch_devtools.natlab import (
    PEER_IP,
    Impairment,
    Lab,
    conntrack_udp_flows,
    host_ip,
    netns_socket,
    new_prefix,
    start_service_in_namespace,
    wan_ip,
)
from holepunch_devtools.processes import ServiceProcess
from holepunch_devtools.punch_bench import WORKERS, Capture, lab_spec, wait_registered
from holepunch_protocol import (
    SECRET_BYTES,
    SESSION_ID_BYTES,
    PeerKind,
    encode_probe_timestamp,
    peek_session_id,
    seal_peer_datagram,
)

from tests.e2e.conftest import WORKER_TEST_ENV, eventually

pytestmark = [pytest.mark.root, pytest.mark.asyncio(loop_scope="module")]

INDEX = {worker_id: index for index, worker_id in WORKERS.items()}
IMPAIRED = Impairment(delay_ms=25, loss_pct=10)  # on nat5 only: see the module docstring
PUNCH_ENV = {**WORKER_TEST_ENV, "PEER_ECHO_TIMEOUT_SEC": "2"}


@dataclass
class PunchLab:
    lab: Lab
    workers: dict[str, ServiceProcess]
    registry: dict[str, dict[str, Any]]

    def endpoint(self, worker_id: str) -> tuple[str, int]:
        record = self.registry[worker_id]
        return record["stun_reported_udp_ip"], record["stun_reported_udp_port"]

    async def introduce(self, initiator: str, responder: str) -> str:
        return await asyncio.to_thread(self.lab.introduce, initiator, responder)

    async def settled(
        self, session_id: str, accept: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The session on /debug/sessions once both workers' results satisfy `accept`."""

        def check() -> dict[str, Any] | None:
            session = self.lab.punch_sessions().get(session_id)
            if session is None:
                return None
            results = session["results"]
            members = (session["initiator"], session["responder"])
            if all(w in results and accept(results[w]) for w in members):
                return session
            return None

        return await eventually(check, f"session {session_id} settled", timeout=timeout)

    async def status(self, worker_id: str) -> dict[str, Any]:
        code, body = await asyncio.to_thread(
            self.lab.worker_request, INDEX[worker_id], "GET", "/status"
        )
        assert code == 200, body
        assert isinstance(body, dict)
        return body

    async def session_status(self, worker_id: str, session_id: str) -> dict[str, Any]:
        status = await self.status(worker_id)
        [session] = [s for s in status["sessions"] if s["session_id"] == session_id]
        assert isinstance(session, dict)
        return session

    async def echo(self, worker_id: str, peer_id: str, attempts: int = 1) -> dict[str, Any]:
        """`POST /peers/{peer_id}/echo` on `worker_id`; asked again after a timeout (504)
        up to `attempts` times (an echo is one datagram each way: a lossy link loses some)."""
        body: Any = None
        for _ in range(attempts):
            code, body = await asyncio.to_thread(
                self.lab.worker_request, INDEX[worker_id], "POST", f"/peers/{peer_id}/echo"
            )
            if code == 200:
                assert isinstance(body, dict)
                return body
            assert code == 504, (code, body)
        raise AssertionError(f"no echo from {peer_id} in {attempts} attempts: {body}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def punch_lab(
    natlab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PunchLab]:
    state_root: Path = tmp_path_factory.mktemp("natlab")
    lab = Lab.create(lab_spec(IMPAIRED), new_prefix(), state_root=state_root)
    workers: dict[str, ServiceProcess] = {}
    try:
        await asyncio.to_thread(lab.up)
        for index, worker_id in WORKERS.items():
            workers[worker_id] = await start_service_in_namespace(
                lab.ns(f"host{index}"),
                "holepunch_worker",
                lab.worker_env(WORKER_ID=worker_id, **PUNCH_ENV),
            )
        registry = await wait_registered(lab)
        yield PunchLab(lab, workers, registry)
    finally:
        for worker in workers.values():
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await worker.stop(timeout=5)
        await asyncio.to_thread(lab.down)


def connected_direct(result: dict[str, Any]) -> bool:
    return bool(result["status"] == "connected" and result["path"] == "direct")


def relayed(result: dict[str, Any]) -> bool:
    return bool(result["status"] == "relayed" and result["path"] == "relay")


def event_of(worker: ServiceProcess, name: str, session_id: str) -> list[dict[str, Any]]:
    return [line for line in worker.events(name) if line.get("session_id") == session_id]


async def only_event(worker: ServiceProcess, name: str, session_id: str) -> dict[str, Any]:
    """The session's one `name` line. Awaited: the worker logs it just before it reports the
    result, and that report can reach the test before this process has read the line."""
    line = await worker.wait_for_event(name, session_id=session_id)
    assert len(event_of(worker, name, session_id)) == 1, f"{name} logged twice"
    return line


async def test_eim_to_eim_punches_a_direct_path(punch_lab: PunchLab) -> None:
    a, b = "eim-a", "eim-b"
    session_id = await punch_lab.introduce(a, b)
    session = await punch_lab.settled(session_id, connected_direct)

    assert session["relay_first"] is False
    for worker_id, peer_id in ((a, b), (b, a)):
        result = session["results"][worker_id]
        # Each side reached the other at the endpoint the rendezvous introduced.
        assert (result["peer_udp_ip"], result["peer_udp_port"]) == punch_lab.endpoint(peer_id)
        assert result["attempts"] >= 1 and result["rtt_ms"] is not None
        connected = await only_event(punch_lab.workers[worker_id], "punch_connected", session_id)
        assert connected["peer_reflexive"] is False
        assert not event_of(punch_lab.workers[worker_id], "relay_started", session_id)
        echo = await punch_lab.echo(worker_id, peer_id)
        assert echo["path"] == "direct" and echo["session_id"] == session_id
        own = await punch_lab.session_status(worker_id, session_id)
        assert (own["state"], own["path"]) == ("connected", "direct")
        assert own["datagrams_sent"]["relay"] == 0
    assert session["relayed_datagrams"] == 0


async def test_symmetric_to_eim_reaches_the_peer_through_the_relay(punch_lab: PunchLab) -> None:
    """A symmetric NAT maps the probes to the EIM peer to a port the peer never heard of,
    and the EIM NAT filters by address and port: no direct path, so the relay carries it."""
    a, b = "sym", "eim-b"
    session_id = await punch_lab.introduce(a, b)
    session = await punch_lab.settled(session_id, relayed)

    assert session["relay_first"] is True
    for worker_id, peer_id in ((a, b), (b, a)):
        result = session["results"][worker_id]
        assert result.get("peer_udp_ip") is None  # no direct address in use
        started = await only_event(punch_lab.workers[worker_id], "relay_started", session_id)
        assert started["reason"] == "relay_first"
        echo = await punch_lab.echo(worker_id, peer_id)
        assert echo["path"] == "relay" and echo["session_id"] == session_id
        own = await punch_lab.session_status(worker_id, session_id)
        assert (own["state"], own["path"]) == ("relayed", "relay")
        assert own["datagrams_received"]["direct"] == 0
    session = (await asyncio.to_thread(punch_lab.lab.punch_sessions))[session_id]
    assert session["relayed_datagrams"] >= 4  # relay probes, acks and both echoes


async def test_symmetric_to_fullcone_goes_direct_via_the_peer_reflexive_address(
    punch_lab: PunchLab,
) -> None:
    """The symmetric side's probes to the full-cone peer leave from a mapping that differs
    from the one STUN reported; the full-cone side answers the authentic probe at the
    address it came from and uses that address from then on."""
    a, b = "sym", "cone"
    session_id = await punch_lab.introduce(a, b)
    session = await punch_lab.settled(session_id, connected_direct)

    reported = punch_lab.endpoint(a)
    local_port = punch_lab.registry[a]["local_udp_port"]
    towards_cone = [
        int(flow["reply_dport"])
        for flow in await asyncio.to_thread(conntrack_udp_flows, punch_lab.lab.ns("nat3"))
        if (flow["src"], flow["sport"], flow["dst"]) == (host_ip(3), str(local_port), wan_ip(4))
    ]
    assert len(towards_cone) == 1, towards_cone
    real_mapping = (wan_ip(3), towards_cone[0])
    assert real_mapping != reported  # the symmetric NAT's mapping towards the cone

    cone_result = session["results"][b]
    assert (cone_result["peer_udp_ip"], cone_result["peer_udp_port"]) == real_mapping
    sym_result = session["results"][a]
    assert (sym_result["peer_udp_ip"], sym_result["peer_udp_port"]) == punch_lab.endpoint(b)
    changed = await only_event(punch_lab.workers[b], "punch_path_changed", session_id)
    assert changed["reason"] == "peer_reflexive"
    assert (changed["from_ip"], changed["from_port"]) == reported
    assert (changed["to_ip"], changed["to_port"]) == real_mapping
    connected = await only_event(punch_lab.workers[b], "punch_connected", session_id)
    assert connected["peer_reflexive"] is True
    for worker_id, peer_id in ((a, b), (b, a)):
        echo = await punch_lab.echo(worker_id, peer_id)
        assert echo["path"] == "direct" and echo["session_id"] == session_id
    cone_session = await punch_lab.session_status(b, session_id)
    assert cone_session["peer_address"] == {"ip": real_mapping[0], "port": real_mapping[1]}


async def test_eim_to_eim_with_50ms_rtt_and_10pct_loss_connects_directly(
    punch_lab: PunchLab,
) -> None:
    a, b = "lossy-a", "lossy-b"
    session_id = await punch_lab.introduce(a, b)
    session = await punch_lab.settled(session_id, connected_direct)

    for worker_id, peer_id in ((a, b), (b, a)):
        result = session["results"][worker_id]
        assert (result["peer_udp_ip"], result["peer_udp_port"]) == punch_lab.endpoint(peer_id)
        if result.get("rtt_ms") is not None:  # a report waits 1 s for an RTT, then goes without
            assert result["rtt_ms"] >= 45, "the impairment is on the path"
        echo = await punch_lab.echo(worker_id, peer_id, attempts=5)
        assert echo["path"] == "direct" and echo["session_id"] == session_id
        assert echo["rtt_ms"] >= 45


def _send_from_stranger(lab: Lab, target: tuple[str, int], datagrams: list[bytes]) -> None:
    """Send each datagram from the public host PEER_IP, which no worker ever sent to."""
    with netns_socket(lab.ns("pub")) as sock:
        sock.bind((PEER_IP, 0))
        for datagram in datagrams:
            sock.sendto(datagram, target)


async def test_datagrams_from_strangers_are_dropped_and_counted(punch_lab: PunchLab) -> None:
    """The full-cone worker's endpoint is reachable by anyone: garbage, probes and data
    sealed with a wrong secret, an unknown session, and a replayed genuine datagram sent
    from a stranger's address are all counted as dropped, and none is delivered or moves
    the session's peer address. Behind an EIM NAT the same datagrams never even reach the
    worker (the NAT filters them)."""
    a, b = "eim-a", "cone"
    lab = punch_lab.lab
    eim_before = await punch_lab.status(a)
    capture = Capture(lab.ns("nat4"), "wan")  # bridged packets never cross br0 itself
    try:
        session_id = await punch_lab.introduce(a, b)
        await punch_lab.settled(session_id, connected_direct)
        # A genuine datagram from eim-a that the cone worker accepted: the echo request.
        await punch_lab.echo(a, b)
        await asyncio.sleep(0.1)  # the capture thread reads the last packets
        key = bytes.fromhex(session_id)
        genuine = [
            p.payload
            for p in capture.snapshot()
            if p.protocol == 17
            and (p.src, p.dst) == (wan_ip(1), wan_ip(4))
            and peek_session_id(p.payload) == key
            and p.payload[4] == PeerKind.DATA
        ]
    finally:
        capture.close()
    assert genuine, "captured eim-a's echo request to the cone worker"

    before = await punch_lab.status(b)
    session_before = next(s for s in before["sessions"] if s["session_id"] == session_id)
    wrong_secret = os.urandom(SECRET_BYTES)
    timestamp = encode_probe_timestamp(1)
    strangers = [
        b"hello, worker",
        seal_peer_datagram(wrong_secret, PeerKind.PROBE, key, 10**6, timestamp),
        seal_peer_datagram(wrong_secret, PeerKind.DATA, key, 10**6 + 1, b"\x00attack"),
        seal_peer_datagram(
            wrong_secret, PeerKind.PROBE, os.urandom(SESSION_ID_BYTES), 1, timestamp
        ),
        genuine[-1],  # a replay, from another address
    ]
    await asyncio.to_thread(_send_from_stranger, lab, punch_lab.endpoint(b), strangers)
    await asyncio.to_thread(_send_from_stranger, lab, punch_lab.endpoint(a), strangers)

    def counted() -> tuple[dict[str, Any], dict[str, Any]] | None:
        code, status = lab.worker_request(INDEX[b], "GET", "/status")
        assert code == 200
        [session] = [s for s in status["sessions"] if s["session_id"] == session_id]
        dropped = session["dropped"]
        if (
            status["datagrams"]["dropped_other"] > before["datagrams"]["dropped_other"]
            and status["dropped_no_session"] > before["dropped_no_session"]
            and dropped.get("bad_mac", 0) >= session_before["dropped"].get("bad_mac", 0) + 2
            and dropped.get("replay", 0) > session_before["dropped"].get("replay", 0)
        ):
            return status, session
        return None

    after, session_after = await eventually(counted, "the cone worker counted the strangers")
    assert after["datagrams"]["dropped_other"] == before["datagrams"]["dropped_other"] + 1
    assert after["dropped_no_session"] == before["dropped_no_session"] + 1
    assert (
        after["datagrams"]["peer_datagrams"] >= before["datagrams"]["peer_datagrams"] + 4
    )  # the four sealed ones, plus any keepalive from eim-a
    dropped, dropped_before = session_after["dropped"], session_before["dropped"]
    assert dropped.get("bad_mac", 0) == dropped_before.get("bad_mac", 0) + 2
    assert dropped.get("replay", 0) == dropped_before.get("replay", 0) + 1
    # Nothing delivered, nothing moved.
    assert after["peer_data_received"] == before["peer_data_received"]
    assert session_after["delivered"] == session_before["delivered"]
    assert session_after["peer_address"] == session_before["peer_address"]
    assert session_after["peer_address"] == {"ip": wan_ip(1), "port": punch_lab.endpoint(a)[1]}
    assert session_after["path_changes"] == session_before["path_changes"] == 0
    assert (session_after["state"], session_after["path"]) == ("connected", "direct")
    assert not event_of(punch_lab.workers[b], "punch_path_changed", session_id)
    echo = await punch_lab.echo(b, a)
    assert echo["path"] == "direct"

    # eim-a's NAT filtered the same datagrams: none reached the worker's socket.
    eim_after = await punch_lab.status(a)
    assert eim_after["datagrams"]["dropped_other"] == eim_before["datagrams"]["dropped_other"]
    assert eim_after["dropped_no_session"] == eim_before["dropped_no_session"]
