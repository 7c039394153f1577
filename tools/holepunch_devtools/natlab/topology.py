"""Where everything in a lab is: addresses, ports, namespace names and lab prefixes.

Every lab is a set of namespaces named `<prefix>-<role>`, role one of `pub`, `nat<i>`,
`host<i>` (i in 1..MAX_NATS); see the package docstring for the picture.
"""

from __future__ import annotations

import os
import re
import secrets

__all__ = [
    "CLI_PREFIX",
    "MAX_NATS",
    "PEER_IP",
    "PUBLIC_SUBNET",
    "RENDEZVOUS_IP",
    "RENDEZVOUS_PORT",
    "STUN_IPS",
    "STUN_PORT",
    "default_port_range",
    "host_ip",
    "is_role",
    "new_prefix",
    "prefix_owner_pid",
    "router_lan_ip",
    "validate_prefix",
    "wan_ip",
]

PUBLIC_SUBNET = "198.51.100.0/24"
STUN_IPS = ("198.51.100.10", "198.51.100.11")
PEER_IP = "198.51.100.12"
RENDEZVOUS_IP = STUN_IPS[0]
RENDEZVOUS_PORT = 8080
STUN_PORT = 3478
CLI_PREFIX = "hp-lab"
MAX_NATS = 9  # keeps each NAT's /24 and default port range distinct and names short

_PREFIX_PATTERN = re.compile(r"^hp-[a-z0-9]+(?:-[a-z0-9]+)*$")
# Test labs: hp-<pid of the creating process>-<4 hex>; the pid tells a leftover apart.
_OWNED_PREFIX = re.compile(r"^hp-(?P<pid>\d+)-[0-9a-f]{4}$")
_ROLE = re.compile(r"^(?:pub|(?:nat|host)[1-9])$")


def wan_ip(index: int) -> str:
    return f"198.51.100.{100 + index}"


def router_lan_ip(index: int) -> str:
    return f"10.0.{index}.1"


def host_ip(index: int) -> str:
    return f"10.0.{index}.2"


def default_port_range(index: int) -> tuple[int, int]:
    return (20000 + 1000 * index, 20999 + 1000 * index)


def is_role(role: str) -> bool:
    """Whether `role` names a lab host: pub, nat1..nat9 or host1..host9."""
    return _ROLE.match(role) is not None


def new_prefix() -> str:
    """A per-run unique prefix: `hp-<pid>-<4 hex>` (the pid identifies leftovers)."""
    return f"hp-{os.getpid()}-{secrets.token_hex(2)}"


def prefix_owner_pid(prefix: str) -> int | None:
    """The pid of the process that made a `new_prefix()` lab; None for any other prefix."""
    match = _OWNED_PREFIX.match(prefix)
    return int(match["pid"]) if match else None


def validate_prefix(prefix: str) -> str:
    # Namespace names become file names under /run/netns; keep them short and plain.
    if not _PREFIX_PATTERN.match(prefix) or len(prefix) > 40:
        raise ValueError(f"lab prefix must look like hp-<letters/digits>[-...], got {prefix!r}")
    return prefix
