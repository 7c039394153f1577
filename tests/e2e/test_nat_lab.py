"""Workers behind real Linux NAT (network namespaces, coturn, the rendezvous): what they
register, how the registry classifies each NAT, the keepalive that holds a mapping past
the NAT's UDP timeout, and re-reporting after the NAT forgets the mapping. Each test runs
on a clean network and with a 50 ms round trip and 10 % loss each way (conftest)."""

from __future__ import annotations

import asyncio
import errno
import secrets
import socket
import subprocess
from typing import Any

import pytest
from holepunch_devtools.natlab import (
    PEER_IP,
    STUN_IPS,
    STUN_PORT,
    Lab,
    NatKind,
    NatSpec,
    binding_request,
    conntrack_udp_flows,
    host_ip,
    mapped_address,
    netns_socket,
    udp_exchange,
    wan_ip,
)
from holepunch_devtools.processes import LogLine
from holepunch_protocol import encode_ping, pong_token

from tests.e2e.conftest import MakeLab, StartWorker, eventually

pytestmark = pytest.mark.root

Endpoint = tuple[str, int]


def registered(lab: Lab, worker_id: str, index: int, mapping: str) -> dict[str, Any] | None:
    """The registry entry once it holds NAT `index`'s address and classification."""
    record = lab.list_workers().get(worker_id)
    if (
        record
        and record.get("stun_reported_udp_ip") == wan_ip(index)
        and record.get("nat_mapping") == mapping
    ):
        return record
    return None


def endpoint_of(record: dict[str, Any]) -> Endpoint:
    return record["stun_reported_udp_ip"], record["stun_reported_udp_port"]


def pinged(lab: Lab, source: Endpoint, target: Endpoint, attempts: int = 6) -> bool:
    """Whether a HOLEPUNCH ping from `source` (an address of the public namespace, with a
    port, 0 for any) to `target` gets its pong. Binding a STUN server's own address and port
    needs SO_REUSEADDR (coturn sets it too); the connected socket is the one the kernel
    hands the pong to."""
    with netns_socket(lab.ns("pub")) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(source)
        sock.connect(target)
        token = secrets.token_hex(8).encode()
        reply = udp_exchange(
            sock, target, encode_ping(token), lambda data: pong_token(data) == token,
            attempts=attempts, wait_sec=0.5,
        )  # fmt: skip
    return reply is not None


def delivered(lab: Lab, source: Endpoint, target: Endpoint, receiver: socket.socket) -> bool:
    """Whether a datagram from `source` in the public namespace to `target` reaches
    `receiver` (tried a few times: the link may be lossy)."""
    with netns_socket(lab.ns("pub")) as sender:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sender.bind(source)
        receiver.settimeout(0.5)
        for _ in range(5):
            payload = secrets.token_bytes(8)
            sender.sendto(payload, target)
            try:
                while True:
                    if receiver.recv(64) == payload:
                        return True
            except TimeoutError:
                continue
    return False


def nat_sees(lab: Lab, index: int, local_port: int) -> dict[str, int]:
    """For each STUN server, the public port NAT `index` maps the worker's socket to
    towards it (the reply tuple of the conntrack entry: the source coturn saw)."""
    seen = {}
    for flow in conntrack_udp_flows(lab.ns(f"nat{index}")):
        if (flow["src"], flow["sport"], flow["dport"]) == (
            host_ip(index), str(local_port), str(STUN_PORT)
        ) and flow["dst"] in STUN_IPS:  # fmt: skip
            assert flow["reply_dst"] == wan_ip(index)
            seen[flow["dst"]] = int(flow["reply_dport"])
    return seen


def assert_isolated(lab: Lab) -> None:
    """Nothing in the lab routes out, and the machine has no route in."""
    for namespace in lab.namespaces:
        routes = subprocess.run(
            ["ip", "-n", namespace, "route", "show", "default"], capture_output=True, text=True
        ).stdout.strip()
        if namespace.endswith(tuple(f"-host{i}" for i in range(1, 10))):
            assert routes.startswith("default via 10.0."), routes  # only to its own router
        else:
            assert routes == "", f"{namespace} has a default route: {routes}"
        for outside in ("192.0.2.1", "8.8.8.8"):
            if "-host" in namespace:
                continue  # its router is the next hop, checked above
            with netns_socket(namespace) as probe, pytest.raises(OSError) as raised:
                probe.connect((outside, 9))
            assert raised.value.errno == errno.ENETUNREACH
    with netns_socket(lab.ns("pub")) as probe, pytest.raises(OSError):
        probe.connect((host_ip(1), 9))  # the public side cannot address private hosts
    root_addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert "198.51.100." not in root_addresses


async def test_each_nat_kind_registers_the_mapping_coturn_saw(
    make_lab: MakeLab, start_worker: StartWorker
) -> None:
    kinds = (NatKind.EIM, NatKind.SYMMETRIC, NatKind.FULL_CONE)
    lab = make_lab(*(NatSpec(kind) for kind in kinds))
    await asyncio.to_thread(assert_isolated, lab)
    for index, kind in enumerate(kinds, start=1):
        await start_worker(lab, index, f"worker-{kind.value}")

    for index, kind in enumerate(kinds, start=1):
        worker_id = f"worker-{kind.value}"
        record = await eventually(
            lambda: registered(lab, worker_id, index, kind.expected_mapping),  # noqa: B023
            f"{worker_id} registered behind nat{index} as {kind.expected_mapping}",
        )
        public_ip, public_port = endpoint_of(record)
        local_port = record["local_udp_port"]
        # The NAT's public address, not the host's private one, over UDP and TCP alike.
        assert public_ip == wan_ip(index) != host_ip(index)
        assert record["websocket_observed_ip"] == wan_ip(index)
        # What coturn saw is what the NAT's conntrack table translated the socket to.
        seen = await asyncio.to_thread(nat_sees, lab, index, local_port)
        assert set(seen) == set(STUN_IPS), seen
        if kind is NatKind.SYMMETRIC:
            assert len(set(seen.values())) == 2, f"one mapping per destination: {seen}"
            assert public_port in seen.values()
        else:
            assert set(seen.values()) == {public_port}, seen
        if kind is NatKind.FULL_CONE:
            assert public_port == local_port  # 1:1 NAT preserves ports
        else:
            low, high = lab.port_range(index)
            assert low <= public_port <= high and public_port != local_port

    # Filtering, seen from a public host the workers never sent to (PEER_IP) and from
    # the STUN server a worker did send to.
    eim, symmetric, full_cone = (
        endpoint_of(lab.list_workers()[f"worker-{kind.value}"]) for kind in kinds
    )
    reachable = await asyncio.gather(
        asyncio.to_thread(pinged, lab, (PEER_IP, 0), full_cone),
        asyncio.to_thread(pinged, lab, (STUN_IPS[0], STUN_PORT), eim),
        asyncio.to_thread(pinged, lab, (PEER_IP, 0), eim, 3),
        asyncio.to_thread(pinged, lab, (STUN_IPS[0], STUN_PORT + 100), eim, 3),
        asyncio.to_thread(pinged, lab, (PEER_IP, 0), symmetric, 3),
    )
    assert reachable == [
        True,  # full cone: anyone reaches the mapping
        True,  # port-restricted: the server the worker sent to does
        False,  # ...a host it never sent to does not
        False,  # ...nor the same server from another port
        False,  # symmetric: a host it never sent to does not
    ]


async def test_refresh_keeps_the_mapping_past_the_nat_udp_timeout(
    make_lab: MakeLab, start_worker: StartWorker
) -> None:
    """With the NAT's UDP conntrack timeout at 5 s and STUN refresh every 2 s, the
    registered endpoint is unchanged and reachable after twice the timeout, while a
    socket behind the same NAT that sent once and then stayed quiet has lost its mapping.

    Reachability is checked from the STUN server's own address and port: the NAT filters
    by address and port (port-restricted), so a ping from any host the worker never sent
    to is dropped whether the mapping lives or not, and proves nothing. The server the
    worker refreshes towards is the one peer the mapping must stay open to."""
    timeout_sec = 5
    lab = make_lab(NatSpec(NatKind.EIM, udp_timeout_sec=timeout_sec))
    assert await asyncio.to_thread(lab.udp_timeout, 1) == timeout_sec
    worker = await start_worker(lab, 1, "keepalive", STUN_REFRESH_SEC="2")
    record = await eventually(
        lambda: registered(lab, "keepalive", 1, "endpoint_independent"), "keepalive registered"
    )
    endpoint = endpoint_of(record)
    lines_before = len(worker.lines)

    # The control: one binding from another socket on host1, then silence.
    with netns_socket(lab.ns("host1")) as quiet:
        quiet.bind(("0.0.0.0", 0))
        stun_server = (STUN_IPS[1], STUN_PORT)
        quiet_mapping = await asyncio.to_thread(_bind_from, quiet, stun_server)
        assert quiet_mapping[0] == wan_ip(1)
        assert await asyncio.to_thread(delivered, lab, stun_server, quiet_mapping, quiet)

        # Deliberate wait, not synchronisation: let the NAT's UDP timeout pass twice
        # (plus a second), so any mapping not refreshed in that time is gone.
        await asyncio.sleep(2 * timeout_sec + 1)

        assert not await asyncio.to_thread(delivered, lab, stun_server, quiet_mapping, quiet)

    record_after = lab.list_workers()["keepalive"]
    assert endpoint_of(record_after) == endpoint
    assert record_after["nat_mapping"] == "endpoint_independent"
    rounds = [line for line in worker.lines[lines_before:] if _is_event(line, "stun_result")]
    assert len(rounds) >= 2 * timeout_sec // 2, "the worker kept refreshing"
    assert {(line["udp_ip"], line["udp_port"]) for line in rounds} == {endpoint}
    assert not any(
        _is_event(line, "mapping_classified") and line.get("changed")
        for line in worker.lines[lines_before:]
    )
    seen = await asyncio.to_thread(nat_sees, lab, 1, record["local_udp_port"])
    assert set(seen.values()) == {endpoint[1]}
    assert await asyncio.to_thread(pinged, lab, (STUN_IPS[0], STUN_PORT), endpoint)


async def test_worker_reports_the_new_mapping_after_the_nat_forgets_it(
    make_lab: MakeLab, start_worker: StartWorker
) -> None:
    """`conntrack -F` in the router drops every mapping; with the NAT's public port
    range moved first, the next mapping is certain to differ from the old one."""
    lab = make_lab(NatSpec(NatKind.EIM))
    worker = await start_worker(lab, 1, "flushed")
    record = await eventually(
        lambda: registered(lab, "flushed", 1, "endpoint_independent"), "flushed registered"
    )
    old = endpoint_of(record)
    low, high = lab.port_range(1)
    assert low <= old[1] <= high

    new_range = (30000, 30999)
    await asyncio.to_thread(lab.set_port_range, 1, new_range)
    await asyncio.to_thread(lab.flush_conntrack, 1)

    ack = await worker.wait_for(
        lambda line: (
            _is_event(line, "endpoint_ack")
            and line.get("status") == "success"
            and new_range[0] <= (line.get("udp_port") or 0) <= new_range[1]
        ),
        timeout=30,
        what="endpoint_ack for a port in the new range",
    )
    new = (ack["udp_ip"], ack["udp_port"])
    assert new[0] == wan_ip(1) and new != old
    await eventually(
        lambda: endpoint_of(lab.list_workers()["flushed"]) == new, "registry shows the new endpoint"
    )
    assert lab.list_workers()["flushed"]["nat_mapping"] == "endpoint_independent"
    assert await asyncio.to_thread(pinged, lab, (STUN_IPS[0], STUN_PORT), new)
    assert not await asyncio.to_thread(pinged, lab, (STUN_IPS[0], STUN_PORT), old, 4)


def _bind_from(sock: socket.socket, server: Endpoint) -> Endpoint:
    request, transaction_id = binding_request()
    response = udp_exchange(
        sock, server, request, lambda data: mapped_address(data, transaction_id) is not None
    )
    assert response is not None, "no STUN answer"
    mapped = mapped_address(response, transaction_id)
    assert mapped is not None
    return mapped


def _is_event(line: LogLine, name: str) -> bool:
    return line.get("event") == name
