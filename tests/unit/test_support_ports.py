"""tests/support/ports.py: ports below the ephemeral range, disjoint per xdist worker, never
handed out twice."""

from __future__ import annotations

import socket

from tests.support.ports import free_tcp_port, free_udp_port, port_slice


def test_each_xdist_worker_gets_its_own_slice_below_the_ephemeral_range() -> None:
    slices = [port_slice(f"gw{i}", 3, ephemeral_start=32768) for i in range(3)]
    taken = [set(ports) for ports in slices]
    assert all(len(ports) >= 3000 for ports in taken)
    assert not (taken[0] & taken[1] or taken[1] & taken[2] or taken[0] & taken[2])
    assert max(max(ports) for ports in taken) < 32768
    assert min(port_slice(None, 1, ephemeral_start=32768)) >= 1024


def test_a_low_ephemeral_range_still_leaves_privileged_ports_alone() -> None:
    assert min(port_slice(None, 1, ephemeral_start=2000)) == 1024


def test_ports_are_free_and_never_handed_out_twice() -> None:
    ports = [free_tcp_port() for _ in range(20)] + [free_udp_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as server:
        server.bind(("127.0.0.1", ports[0]))  # still free: nothing took it meanwhile
