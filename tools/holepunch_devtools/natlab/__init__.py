"""The NAT lab: hosts behind real Linux NAT routers, in network namespaces (needs root).

Every lab is a set of namespaces named `<prefix>-<role>`; nothing is created in the
root namespace, so the lab has no link to the machine it runs on, no default route out,
and no address reachable from outside it:

    <prefix>-pub: the "public" segment, bridge br0 in 198.51.100.0/24 (TEST-NET-2)
      198.51.100.10  coturn :3478 (STUN), rendezvous :8080
      198.51.100.11  coturn :3478 (the second STUN address, for mapping classification)
      198.51.100.12  a public peer the workers never contact (for unsolicited pings)
      n<i>           bridge port, veth to nat<i>'s wan
    <prefix>-nat<i>: NAT router, wan 198.51.100.<100+i>/24, lan 10.0.<i>.1/24, ip_forward=1
    <prefix>-host<i>: private host, eth0 10.0.<i>.2/24, default route via 10.0.<i>.1

NAT kinds (`NatKind`), all plain iptables on conntrack (`rules` says how each is made):
`eim` (endpoint-independent mapping, port-restricted filtering, what Cloud NAT with EIM
does), `symmetric` (a new mapping for every destination) and `fullcone` (1:1 static NAT,
what a cloud VM's external IP address or a home router's "DMZ host" is).

Impairment (`Impairment`: delay each way and loss each way) on every NAT's wan link uses
`tc netem` on both ends of the link when the kernel has it. Kernels without sch_netem
(some VM kernels) get the same from netfilter instead: `-m statistic` drops, and an
NFQUEUE on the router's wan whose verdicts `delay_queue` issues after the delay.

    lab = Lab.create(LabSpec(nats=(NatSpec(NatKind.EIM), NatSpec(NatKind.FULL_CONE))))
    try:
        lab.up()
        lab.exec_argv("host1", ["ping", "-c1", "198.51.100.10"])
    finally:
        lab.down()

Modules, one job each: `topology` (addresses, names), `spec` (what a lab is made of),
`rules` (iptables and netem text), `namespaces` (commands, finding and removing labs),
`sockets` (sockets and HTTP inside a namespace), `streams` (asyncio TCP client and
server and a UDP echo inside a namespace), `stun` (Binding with aioice's codec),
`delay_queue` (the NFQUEUE client), `lab` (building, running and tearing down one lab)
and `cli` (`scripts/natlab`).
"""

from __future__ import annotations

from holepunch_devtools.natlab.cli import main
from holepunch_devtools.natlab.delay_queue import run_delay_queue
from holepunch_devtools.natlab.errors import LabError
from holepunch_devtools.natlab.lab import Lab, start_service_in_namespace
from holepunch_devtools.natlab.namespaces import (
    conntrack_udp_flows,
    destroy_lab,
    find_labs,
    remove_stale_labs,
)
from holepunch_devtools.natlab.rules import iptables_rules, netem_arguments, nfqueue_rules
from holepunch_devtools.natlab.sockets import (
    http_get_json,
    http_request_json,
    netns_socket,
    udp_exchange,
)
from holepunch_devtools.natlab.spec import Impairment, LabSpec, NatKind, NatSpec
from holepunch_devtools.natlab.stun import binding_request, mapped_address, stun_binding
from holepunch_devtools.natlab.topology import (
    PEER_IP,
    PUBLIC_SUBNET,
    RENDEZVOUS_PORT,
    STUN_IPS,
    STUN_PORT,
    default_port_range,
    host_ip,
    new_prefix,
    validate_prefix,
    wan_ip,
)

__all__ = [
    "PEER_IP",
    "PUBLIC_SUBNET",
    "RENDEZVOUS_PORT",
    "STUN_IPS",
    "STUN_PORT",
    "Impairment",
    "Lab",
    "LabError",
    "LabSpec",
    "NatKind",
    "NatSpec",
    "binding_request",
    "conntrack_udp_flows",
    "default_port_range",
    "destroy_lab",
    "find_labs",
    "host_ip",
    "http_get_json",
    "http_request_json",
    "iptables_rules",
    "main",
    "mapped_address",
    "netem_arguments",
    "netns_socket",
    "new_prefix",
    "nfqueue_rules",
    "remove_stale_labs",
    "run_delay_queue",
    "start_service_in_namespace",
    "stun_binding",
    "udp_exchange",
    "validate_prefix",
    "wan_ip",
]
