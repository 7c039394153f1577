"""A NAT router's packet rules, as text for iptables-restore and arguments for tc (pure).

- `eim`: `MASQUERADE --to-ports RANGE`: Linux NAT gives a new flow from a source that
  already has a mapping that same mapping (nf_nat's find_appropriate_src), so the mapping
  is endpoint-independent. `-m conntrack --ctstate NEW -j DROP` on wan (INPUT and
  FORWARD) drops unsolicited packets, so only an address and port the host sent to gets
  in; it also keeps an early inbound packet from claiming the tuple.
- `symmetric`: `MASQUERADE --random-fully`: a random port for every new flow, so every
  destination sees another mapping (endpoint-dependent), with the same filtering.
- `fullcone`: a 1:1 static NAT (DNAT everything sent to the wan address to the host,
  SNAT the host to the wan address, ports preserved).
"""

from __future__ import annotations

from holepunch_devtools.natlab.spec import Impairment, NatKind
from holepunch_devtools.natlab.topology import default_port_range, host_ip, wan_ip

__all__ = ["iptables_rules", "netem_arguments", "nfqueue_rules"]


def iptables_rules(kind: NatKind, index: int, port_range: tuple[int, int] | None) -> str:
    """The router's rules for `kind`, as iptables-restore input."""
    low, high = port_range or default_port_range(index)
    ports = f"--to-ports {low}-{high}"
    no_unsolicited = [
        "*filter",
        "-A INPUT -i wan -m conntrack --ctstate NEW -j DROP",
        "-A FORWARD -i wan -m conntrack --ctstate NEW -j DROP",
        "COMMIT",
    ]
    if kind in (NatKind.EIM, NatKind.SYMMETRIC):
        # The one difference: symmetric picks a random port for every new flow.
        random_port = " --random-fully" if kind is NatKind.SYMMETRIC else ""
        nat = [
            "*nat",
            f"-A POSTROUTING -o wan -p udp -j MASQUERADE {ports}{random_port}",
            "-A POSTROUTING -o wan -j MASQUERADE",
            "COMMIT",
        ]
        return "\n".join([*nat, *no_unsolicited, ""])
    nat = [
        "*nat",
        f"-A PREROUTING -i wan -d {wan_ip(index)} -j DNAT --to-destination {host_ip(index)}",
        f"-A POSTROUTING -o wan -s {host_ip(index)} -j SNAT --to-source {wan_ip(index)}",
        "COMMIT",
    ]
    return "\n".join([*nat, ""])


def nfqueue_rules(impairment: Impairment, queue: int = 0) -> str:
    """Loss and delay on the router's wan without netem (see `delay_queue`)."""
    lines = ["*mangle"]
    for chain, direction in (("PREROUTING", "-i"), ("POSTROUTING", "-o")):
        if impairment.loss_pct > 0:
            probability = f"{impairment.loss_pct / 100:.4f}"
            lines.append(
                f"-A {chain} {direction} wan -m statistic --mode random "
                f"--probability {probability} -j DROP"
            )
        if impairment.delay_ms > 0:
            lines.append(f"-A {chain} {direction} wan -j NFQUEUE --queue-num {queue}")
    lines += ["COMMIT", ""]
    return "\n".join(lines)


def netem_arguments(impairment: Impairment) -> list[str]:
    arguments = ["netem"]
    if impairment.delay_ms > 0:
        arguments += ["delay", f"{impairment.delay_ms}ms"]
    if impairment.loss_pct > 0:
        arguments += ["loss", f"{impairment.loss_pct:g}%"]
    return arguments
