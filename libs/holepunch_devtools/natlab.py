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

NAT kinds (`NatKind`), all plain iptables on conntrack:

- `eim`: endpoint-independent mapping, port-restricted filtering, what Cloud NAT with EIM
  does. `MASQUERADE --to-ports RANGE`: Linux NAT gives a new flow from a source that
  already has a mapping that same mapping (nf_nat's find_appropriate_src), so the mapping
  is endpoint-independent. `-m conntrack --ctstate NEW -j DROP` on wan (INPUT and
  FORWARD) drops unsolicited packets, so only an address and port the host sent to gets
  in; it also keeps an early inbound packet from claiming the tuple (shared notes).
- `symmetric`: `MASQUERADE --random-fully`: a random port for every new flow, so every
  destination sees another mapping (endpoint-dependent), with the same filtering.
- `fullcone`: a 1:1 static NAT (DNAT everything sent to the wan address to the host,
  SNAT the host to the wan address, ports preserved), which is what a cloud VM's
  external IP address or a home router's "DMZ host" is: endpoint-independent mapping
  and endpoint-independent filtering, so anyone can reach a port the host listens on.

Impairment (`Impairment`: delay each way and loss each way) on every NAT's wan link uses
`tc netem` on both ends of the link when the kernel has it. Kernels without sch_netem
(some VM kernels) get the same from netfilter instead: `-m statistic` drops, and an
NFQUEUE on the router's wan whose verdicts this module issues after the delay
(`run_delay_queue`, a small nfnetlink_queue client running in the router namespace).

    lab = Lab.create(LabSpec(nats=(NatSpec(NatKind.EIM), NatSpec(NatKind.FULL_CONE))))
    try:
        lab.up()
        lab.exec_argv("host1", ["ping", "-c1", "198.51.100.10"])
    finally:
        lab.down()

Only the standard library is used here (the services the lab runs need the project).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import enum
import errno
import heapq
import http.client
import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from holepunch_devtools.processes import ServiceProcess, start_service

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
    "find_labs",
    "host_ip",
    "http_get_json",
    "http_request_json",
    "iptables_rules",
    "main",
    "mapped_address",
    "netns_socket",
    "new_prefix",
    "remove_stale_labs",
    "run_delay_queue",
    "start_service_in_namespace",
    "stun_binding",
    "udp_exchange",
    "wan_ip",
]

PUBLIC_SUBNET = "198.51.100.0/24"
STUN_IPS = ("198.51.100.10", "198.51.100.11")
PEER_IP = "198.51.100.12"
RENDEZVOUS_IP = STUN_IPS[0]
RENDEZVOUS_PORT = 8080
STUN_PORT = 3478
DEFAULT_STATE_ROOT = Path("/run/holepunch-natlab")
CLI_PREFIX = "hp-lab"
MAX_NATS = 9  # keeps each NAT's /24 and default port range distinct and names short
START_TIMEOUT_SEC = 20.0
STOP_TIMEOUT_SEC = 3.0

_PREFIX_PATTERN = re.compile(r"^hp-[a-z0-9]+(?:-[a-z0-9]+)*$")
# Test labs: hp-<pid of the creating process>-<4 hex>; the pid tells a leftover apart.
_OWNED_PREFIX = re.compile(r"^hp-(?P<pid>\d+)-[0-9a-f]{4}$")
_ROLE = re.compile(r"^(?:pub|(?:nat|host)[1-9])$")


class LabError(RuntimeError):
    """A lab command failed; the message names the command and what it printed."""


class NatKind(enum.StrEnum):
    EIM = "eim"  # endpoint-independent mapping, port-restricted filtering
    SYMMETRIC = "symmetric"  # endpoint-dependent mapping
    FULL_CONE = "fullcone"  # 1:1 static NAT: EIM and endpoint-independent filtering

    @property
    def expected_mapping(self) -> str:
        """The worker's classification for this kind (holepunch_protocol.MappingBehaviour)."""
        return "endpoint_dependent" if self is NatKind.SYMMETRIC else "endpoint_independent"


@dataclass(frozen=True, slots=True)
class Impairment:
    """Added on a NAT's wan link, in each direction: 25 ms each way is a 50 ms RTT."""

    delay_ms: int = 0
    loss_pct: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.delay_ms <= 10_000:
            raise ValueError("delay_ms must be in 0..10000")
        if not 0.0 <= self.loss_pct < 100.0:
            raise ValueError("loss_pct must be in 0..100 (exclusive)")

    @property
    def active(self) -> bool:
        return self.delay_ms > 0 or self.loss_pct > 0


@dataclass(frozen=True, slots=True)
class NatSpec:
    kind: NatKind
    # Public UDP ports the NAT maps to (eim, symmetric); None: 20000+1000*i..+999.
    # Ignored for fullcone, which preserves ports.
    port_range: tuple[int, int] | None = None
    # nf_conntrack_udp_timeout(_stream) in the router's namespace; None: kernel default.
    udp_timeout_sec: int | None = None
    impairment: Impairment = Impairment()

    def __post_init__(self) -> None:
        if self.port_range is not None:
            low, high = self.port_range
            if not 1024 <= low <= high <= 65535:
                raise ValueError("port_range must satisfy 1024 <= low <= high <= 65535")
        if self.udp_timeout_sec is not None and not 1 <= self.udp_timeout_sec <= 3600:
            raise ValueError("udp_timeout_sec must be in 1..3600")


@dataclass(frozen=True, slots=True)
class LabSpec:
    nats: tuple[NatSpec, ...]
    start_coturn: bool = True
    start_rendezvous: bool = True

    def __post_init__(self) -> None:
        if not 1 <= len(self.nats) <= MAX_NATS:
            raise ValueError(f"a lab has 1..{MAX_NATS} NATs")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabSpec:
        nats = []
        for nat in data["nats"]:
            port_range = nat.get("port_range")
            nats.append(
                NatSpec(
                    kind=NatKind(nat["kind"]),
                    port_range=None if port_range is None else (port_range[0], port_range[1]),
                    udp_timeout_sec=nat.get("udp_timeout_sec"),
                    impairment=Impairment(**nat.get("impairment", {})),
                )
            )
        return cls(
            nats=tuple(nats),
            start_coturn=bool(data.get("start_coturn", True)),
            start_rendezvous=bool(data.get("start_rendezvous", True)),
        )


# ---------------------------------------------------------------------- addressing


def wan_ip(index: int) -> str:
    return f"198.51.100.{100 + index}"


def router_lan_ip(index: int) -> str:
    return f"10.0.{index}.1"


def host_ip(index: int) -> str:
    return f"10.0.{index}.2"


def default_port_range(index: int) -> tuple[int, int]:
    return (20000 + 1000 * index, 20999 + 1000 * index)


def new_prefix() -> str:
    """A per-run unique prefix: `hp-<pid>-<4 hex>` (the pid identifies leftovers)."""
    return f"hp-{os.getpid()}-{secrets.token_hex(2)}"


def validate_prefix(prefix: str) -> str:
    # Namespace names become file names under /run/netns; keep them short and plain.
    if not _PREFIX_PATTERN.match(prefix) or len(prefix) > 40:
        raise ValueError(f"lab prefix must look like hp-<letters/digits>[-...], got {prefix!r}")
    return prefix


# ---------------------------------------------------------------------- rules


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
    if kind is NatKind.EIM:
        nat = [
            "*nat",
            f"-A POSTROUTING -o wan -p udp -j MASQUERADE {ports}",
            "-A POSTROUTING -o wan -j MASQUERADE",
            "COMMIT",
        ]
        return "\n".join([*nat, *no_unsolicited, ""])
    if kind is NatKind.SYMMETRIC:
        nat = [
            "*nat",
            f"-A POSTROUTING -o wan -p udp -j MASQUERADE {ports} --random-fully",
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
    """Loss and delay on the router's wan without netem (see `run_delay_queue`)."""
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


# ---------------------------------------------------------------------- commands


def _run(
    argv: Sequence[str], *, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise LabError(f"`{' '.join(argv)}` exited {result.returncode}: {output}")
    return result


def list_namespaces() -> list[str]:
    output = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in output.splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    result = _run(["ip", "netns", "pids", namespace], check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def _process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (killed, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def find_labs() -> dict[str, list[str]]:
    """Every lab on this machine: prefix -> its namespaces."""
    labs: dict[str, list[str]] = {}
    for namespace in list_namespaces():
        prefix, _, role = namespace.rpartition("-")
        if prefix.startswith("hp-") and _ROLE.match(role):
            labs.setdefault(prefix, []).append(namespace)
    return labs


def destroy_lab(prefix: str, state_root: Path = DEFAULT_STATE_ROOT) -> list[str]:
    """Kill every process inside the lab's namespaces, delete them and the state directory.

    Works from the names alone, so it also removes what a killed run left behind.
    Returns the namespaces deleted.
    """
    namespaces = find_labs().get(prefix, [])
    pids = sorted({pid for namespace in namespaces for pid in namespace_pids(namespace)})
    _terminate(pids, {})
    for namespace in namespaces:
        _run(["ip", "netns", "del", namespace], check=False)
    shutil.rmtree(state_root / prefix, ignore_errors=True)
    return namespaces


def remove_stale_labs(state_root: Path = DEFAULT_STATE_ROOT) -> list[str]:
    """Destroy test labs (`hp-<pid>-xxxx`) whose creating process is gone."""
    removed = []
    for prefix in find_labs():
        match = _OWNED_PREFIX.match(prefix)
        if match and not _process_alive(int(match["pid"])):
            destroy_lab(prefix, state_root)
            removed.append(prefix)
    return removed


def _terminate(pids: Sequence[int], children: Mapping[int, subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL what is left after STOP_TIMEOUT_SEC; reap our own children."""

    def alive(pid: int) -> bool:
        child = children.get(pid)
        if child is not None:
            return child.poll() is None
        return _process_alive(pid)

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SEC
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)  # polling process exit, bounded by the deadline
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for child in children.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_TIMEOUT_SEC)


# ---------------------------------------------------------------------- sockets in a namespace

_CLONE_NEWNET = 0x40000000
_T = TypeVar("_T")


def _in_namespace(namespace: str, action: Callable[[], _T]) -> _T:
    """Run `action` on a fresh thread that has joined the namespace (setns(2) changes only
    the calling thread), and return its result. Sockets keep the namespace they were made
    in, so a socket made here is used from any thread afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            with open(f"/run/netns/{namespace}", "rb") as handle:
                if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"setns({namespace}): {os.strerror(code)}")
            outcome.append(action())
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=target, name=f"netns-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def netns_socket(
    namespace: str,
    kind: socket.SocketKind = socket.SOCK_DGRAM,
    family: socket.AddressFamily = socket.AF_INET,
    proto: int = 0,
) -> socket.socket:
    """A socket living in `namespace` (IPv4 by default; AF_PACKET for captures)."""
    return _in_namespace(namespace, lambda: socket.socket(family, kind, proto))


class _NamespaceHTTPConnection(http.client.HTTPConnection):
    def __init__(self, namespace: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._namespace = namespace

    def connect(self) -> None:
        sock = netns_socket(self._namespace, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def http_request_json(
    namespace: str,
    host: str,
    port: int,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """`method` http://host:port/path from inside `namespace`, with `body` as JSON when
    given: (status, parsed JSON body, or None when the body is not JSON)."""
    connection = _NamespaceHTTPConnection(namespace, host, port, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {} if payload is None else {"Content-Type": "application/json"}
        if payload is None and method != "GET":
            headers["Content-Length"] = "0"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return response.status, parsed
    finally:
        connection.close()


def http_get_json(namespace: str, host: str, port: int, path: str, timeout: float = 5.0) -> Any:
    """GET http://host:port/path from inside `namespace` and parse the JSON body."""
    status, body = http_request_json(namespace, host, port, "GET", path, timeout=timeout)
    if status != 200:
        raise LabError(f"GET {path} answered {status}: {str(body)[:200]}")
    return body


def binding_request() -> tuple[bytes, bytes]:
    """An RFC 5389 Binding request and its transaction id."""
    transaction_id = secrets.token_bytes(12)
    return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction_id, transaction_id


def mapped_address(response: bytes, transaction_id: bytes) -> tuple[str, int] | None:
    """The XOR-MAPPED-ADDRESS of a Binding success response, else None."""
    if len(response) < 20 or response[8:20] != transaction_id:
        return None
    kind, length, cookie = struct.unpack("!HHI", response[:8])
    if kind != 0x0101 or cookie != 0x2112A442:
        return None
    offset = 20
    while offset + 4 <= min(len(response), 20 + length):
        attribute, size = struct.unpack("!HH", response[offset : offset + 4])
        value = response[offset + 4 : offset + 4 + size]
        if attribute == 0x0020 and size == 8 and value[1] == 0x01:
            port = struct.unpack("!H", value[2:4])[0] ^ 0x2112
            address = int.from_bytes(value[4:8], "big") ^ 0x2112A442
            return str(ipaddress.IPv4Address(address)), port
        offset += 4 + (size + 3) // 4 * 4
    return None


def stun_binding(
    namespace: str, source_ip: str, server: tuple[str, int], attempts: int = 1
) -> tuple[str, int] | None:
    """The mapped address `server` reports for a fresh socket on `source_ip` in `namespace`."""
    with netns_socket(namespace) as sock:
        sock.bind((source_ip, 0))
        request, transaction_id = binding_request()

        def answers(data: bytes) -> bool:
            return mapped_address(data, transaction_id) is not None

        response = udp_exchange(sock, server, request, answers, attempts=attempts, wait_sec=0.2)
    return None if response is None else mapped_address(response, transaction_id)


def udp_exchange(
    sock: socket.socket,
    target: tuple[str, int],
    payload: bytes,
    accept: Callable[[bytes], bool],
    *,
    attempts: int = 5,
    wait_sec: float = 0.5,
) -> bytes | None:
    """Send `payload` to `target` up to `attempts` times, waiting `wait_sec` after each for
    a datagram from `target` that `accept`s; return it, or None when none came."""
    for _ in range(attempts):
        sock.sendto(payload, target)
        deadline = time.monotonic() + wait_sec
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data, source = sock.recvfrom(4096)
            if source == target and accept(data):
                return data
    return None


def conntrack_udp_flows(namespace: str) -> list[dict[str, str]]:
    """The UDP conntrack entries of `namespace` (needs the `conntrack` tool): per entry the
    original tuple (src, dst, sport, dport) and the reply tuple (reply_src, reply_dst,
    reply_sport, reply_dport), so `reply_dst:reply_dport` is what the far end sees."""
    output = _run(["ip", "netns", "exec", namespace, "conntrack", "-L", "-p", "udp"]).stdout
    flows = []
    for line in output.splitlines():
        pairs = re.findall(r"(\w+)=(\S+)", line)
        entry: dict[str, str] = {}
        for key, value in pairs:
            entry[f"reply_{key}" if key in entry else key] = value
        if "reply_dport" in entry:
            flows.append(entry)
    return flows


# ---------------------------------------------------------------------- the delay queue

_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_PACKET = 0
_NFQNL_MSG_VERDICT = 1
_NFQNL_MSG_CONFIG = 2
_NFQA_PACKET_HDR = 1
_NFQA_VERDICT_HDR = 2
_NFQA_CFG_CMD = 1
_NFQA_CFG_PARAMS = 2
_NFQNL_CFG_CMD_BIND = 1
_NFQNL_COPY_META = 1
_NF_ACCEPT = 1
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLMSG_ERROR = 0x2


def _attribute(kind: int, payload: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def _nfq_message(message: int, queue: int, attributes: bytes, flags: int, seq: int) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue) + attributes
    kind = (_NFNL_SUBSYS_QUEUE << 8) | message
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _packet_ids(data: bytes) -> Iterator[int]:
    """Packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, _seq, _pid = struct.unpack("=IHHII", data[offset : offset + 16])
        if length < 16:
            return
        if kind == (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_PACKET:
            position = offset + 16 + 4  # after nlmsghdr and nfgenmsg
            end = offset + length
            while position + 4 <= end:
                size, attribute = struct.unpack("=HH", data[position : position + 4])
                if size < 4:
                    break
                if attribute & 0x7FFF == _NFQA_PACKET_HDR:
                    yield struct.unpack("!I", data[position + 4 : position + 8])[0]
                    break
                position += (size + 3) // 4 * 4
        elif kind == _NLMSG_ERROR:
            code = struct.unpack("=i", data[offset + 16 : offset + 20])[0]
            if code != 0:
                raise OSError(-code, f"nfnetlink_queue: {os.strerror(-code)}")
        offset += (length + 3) // 4 * 4


def run_delay_queue(
    queue: int, delay_sec: float, ready: IO[str], stop: threading.Event | None = None
) -> None:
    """Hold every packet NFQUEUE'd to `queue` in this namespace for `delay_sec`, then accept
    it, in arrival order (what netem's delay does). Writes `ready` once bound."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    seq = 0

    def configure(attributes: bytes) -> None:
        nonlocal seq
        seq += 1
        sock.send(
            _nfq_message(_NFQNL_MSG_CONFIG, queue, attributes, _NLM_F_REQUEST | _NLM_F_ACK, seq)
        )
        list(_packet_ids(sock.recv(65536)))  # the ack; raises on an error

    configure(
        _attribute(_NFQA_CFG_CMD, struct.pack("!BBH", _NFQNL_CFG_CMD_BIND, 0, socket.AF_INET))
    )
    configure(_attribute(_NFQA_CFG_PARAMS, struct.pack("!IB", 0, _NFQNL_COPY_META)))
    ready.write(f"ready queue={queue} delay_ms={delay_sec * 1000:g}\n")
    ready.flush()

    due: list[tuple[float, int]] = []
    while stop is None or not stop.is_set():
        timeout = 0.5 if not due else max(0.0, due[0][0] - time.monotonic())
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            try:
                data = sock.recv(1 << 17)
            except OSError as error:
                if error.errno == errno.ENOBUFS:  # the kernel dropped some: they are lost
                    continue
                raise
            arrived = time.monotonic()
            for packet_id in _packet_ids(data):
                heapq.heappush(due, (arrived + delay_sec, packet_id))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, packet_id = heapq.heappop(due)
            seq += 1
            verdict = _attribute(_NFQA_VERDICT_HDR, struct.pack("!II", _NF_ACCEPT, packet_id))
            sock.send(_nfq_message(_NFQNL_MSG_VERDICT, queue, verdict, _NLM_F_REQUEST, seq))
    sock.close()


# ---------------------------------------------------------------------- the lab


def netem_available() -> bool:
    """Whether this kernel has sch_netem (tried in a throwaway namespace)."""
    probe = f"hp-{os.getpid()}-{secrets.token_hex(2)}-probe"
    _run(["ip", "netns", "add", probe])
    try:
        result = _run(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem"],
            check=False,
        )
        return result.returncode == 0
    finally:
        _run(["ip", "netns", "del", probe], check=False)


@dataclass
class Lab:
    """One lab: its namespaces, the daemons it started, and the operations tests need."""

    prefix: str
    spec: LabSpec
    state_dir: Path
    python: str = sys.executable
    impairment_backend: str = "none"  # "netem", "nfqueue" or "none"
    _children: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    # ------------------------------------------------------------------ naming

    @classmethod
    def create(
        cls, spec: LabSpec, prefix: str | None = None, state_root: Path = DEFAULT_STATE_ROOT
    ) -> Lab:
        prefix = validate_prefix(prefix or new_prefix())
        return cls(prefix=prefix, spec=spec, state_dir=state_root / prefix)

    @classmethod
    def load(cls, prefix: str, state_root: Path = DEFAULT_STATE_ROOT) -> Lab:
        """A lab another process brought up (from its state file)."""
        state_file = state_root / prefix / "lab.json"
        try:
            state = json.loads(state_file.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab state at {state_file}") from None
        return cls(
            prefix=prefix,
            spec=LabSpec.from_json(state["spec"]),
            state_dir=state_root / prefix,
            impairment_backend=state.get("impairment_backend", "none"),
        )

    def ns(self, role: str) -> str:
        """The namespace of `role` ("pub", "nat<i>", "host<i>")."""
        if not _ROLE.match(role) or (role != "pub" and int(role[-1]) > len(self.spec.nats)):
            raise LabError(
                f"unknown lab host {role!r}: pub, nat1..nat{len(self.spec.nats)}, "
                f"host1..host{len(self.spec.nats)}"
            )
        return f"{self.prefix}-{role}"

    @property
    def namespaces(self) -> list[str]:
        roles = ["pub"]
        for index in range(1, len(self.spec.nats) + 1):
            roles += [f"nat{index}", f"host{index}"]
        return [self.ns(role) for role in roles]

    @property
    def rendezvous_url(self) -> str:
        return f"http://{RENDEZVOUS_IP}:{RENDEZVOUS_PORT}"

    @property
    def stun_servers(self) -> list[tuple[str, int]]:
        return [(ip, STUN_PORT) for ip in STUN_IPS]

    def nat(self, index: int) -> NatSpec:
        return self.spec.nats[index - 1]

    def port_range(self, index: int) -> tuple[int, int]:
        return self.nat(index).port_range or default_port_range(index)

    def worker_env(self, **overrides: str) -> dict[str, str]:
        """Environment for a worker on a private host of this lab."""
        return {
            "RENDEZVOUS_SERVICE_URL": self.rendezvous_url,
            "STUN_SERVERS": ",".join(f"{ip}:{port}" for ip, port in self.stun_servers),
            "UDP_BIND_HOST": "0.0.0.0",
            **overrides,
        }

    # ------------------------------------------------------------------ commands

    def ip(self, role: str, *arguments: str) -> None:
        _run(["ip", "-n", self.ns(role), *arguments])

    def exec_argv(self, role: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` inside `role`'s namespace."""
        return ["ip", "netns", "exec", self.ns(role), *argv]

    def run(
        self, role: str, argv: Sequence[str], stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return _run(self.exec_argv(role, argv), stdin=stdin, check=check)

    # ------------------------------------------------------------------ up / down

    def up(self) -> None:
        """Build the lab and start its daemons; on any failure, remove what was made."""
        if any(namespace in list_namespaces() for namespace in self.namespaces):
            raise LabError(f"lab {self.prefix} already exists (scripts/natlab down first)")
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._choose_impairment_backend()
            self._build()
            self._save_state()
            self._start_daemons()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop everything in the lab and delete its namespaces and state. Idempotent."""
        pids = {pid for namespace in self.namespaces for pid in namespace_pids(namespace)}
        pids |= {pid for pid, child in self._children.items() if child.poll() is None}
        _terminate(sorted(pids), self._children)
        self._children.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        destroy_lab(self.prefix, self.state_dir.parent)

    def _choose_impairment_backend(self) -> None:
        if not any(nat.impairment.active for nat in self.spec.nats):
            self.impairment_backend = "none"
            return
        forced = os.environ.get("HOLEPUNCH_NATLAB_IMPAIRMENT")
        if forced in ("netem", "nfqueue"):
            self.impairment_backend = forced
        else:
            self.impairment_backend = "netem" if netem_available() else "nfqueue"

    def _build(self) -> None:
        for namespace in self.namespaces:
            _run(["ip", "netns", "add", namespace])
            _run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        self.ip("pub", "link", "add", "br0", "type", "bridge")
        for address in (*STUN_IPS, PEER_IP):
            self.ip("pub", "addr", "add", f"{address}/24", "dev", "br0")
        self.ip("pub", "link", "set", "br0", "up")
        for index, nat in enumerate(self.spec.nats, start=1):
            self._build_nat(index, nat)

    def _build_nat(self, index: int, nat: NatSpec) -> None:
        router, host = f"nat{index}", f"host{index}"
        # Both ends of each veth are created directly in their namespaces: short, fixed
        # interface names (15 characters at most) that never meet another lab's.
        self.ip("pub", "link", "add", f"n{index}", "type", "veth", "peer", "name", "wan",
                "netns", self.ns(router))  # fmt: skip
        self.ip("pub", "link", "set", f"n{index}", "master", "br0", "up")
        self.ip(router, "addr", "add", f"{wan_ip(index)}/24", "dev", "wan")
        self.ip(router, "link", "set", "wan", "up")
        self.ip(router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0",
                "netns", self.ns(host))  # fmt: skip
        self.ip(router, "addr", "add", f"{router_lan_ip(index)}/24", "dev", "lan")
        self.ip(router, "link", "set", "lan", "up")
        self.ip(host, "addr", "add", f"{host_ip(index)}/24", "dev", "eth0")
        self.ip(host, "link", "set", "eth0", "up")
        self.ip(host, "route", "add", "default", "via", router_lan_ip(index))
        sysctls = ["net.ipv4.ip_forward=1"]
        if nat.udp_timeout_sec is not None:
            sysctls += [
                f"net.netfilter.nf_conntrack_udp_timeout={nat.udp_timeout_sec}",
                f"net.netfilter.nf_conntrack_udp_timeout_stream={nat.udp_timeout_sec}",
            ]
        self.run(router, ["sysctl", "-q", "-w", *sysctls])
        self.run(
            router, ["iptables-restore"], stdin=iptables_rules(nat.kind, index, nat.port_range)
        )
        if nat.impairment.active and self.impairment_backend == "netem":
            netem = netem_arguments(nat.impairment)
            self.run(router, ["tc", "qdisc", "add", "dev", "wan", "root", *netem])
            self.run("pub", ["tc", "qdisc", "add", "dev", f"n{index}", "root", *netem])
        elif nat.impairment.active:
            self.run(router, ["iptables-restore", "--noflush"], stdin=nfqueue_rules(nat.impairment))

    def _save_state(self) -> None:
        state = {
            "prefix": self.prefix,
            "spec": self.spec.to_json(),
            "impairment_backend": self.impairment_backend,
        }
        (self.state_dir / "lab.json").write_text(json.dumps(state, indent=2) + "\n")

    def _daemon(self, role: str, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Path:
        log_path = self.state_dir / f"{name}.log"
        log = log_path.open("wb")
        self._logs.append(log)
        child = subprocess.Popen(
            self.exec_argv(role, argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            cwd=self.state_dir,
            start_new_session=True,  # outlives `scripts/natlab up`; lab.down() ends it
        )
        self._children[child.pid] = child
        return log_path

    def _await(self, what: str, log: Path, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SEC
        while not ready():
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise LabError(f"{what} not ready after {START_TIMEOUT_SEC} s; log:\n{tail}")
            time.sleep(0.05)  # polling readiness, bounded by the deadline

    def _start_daemons(self) -> None:
        waits: list[tuple[str, Path, Callable[[], bool]]] = []
        if self.impairment_backend == "nfqueue":
            for index, nat in enumerate(self.spec.nats, start=1):
                if nat.impairment.delay_ms > 0:
                    log = self._daemon(
                        f"nat{index}",
                        f"delay-nat{index}",
                        [
                            self.python,
                            *("-m", "holepunch_devtools.natlab", "delay-queue"),
                            *("--delay-ms", str(nat.impairment.delay_ms)),
                        ],
                        {},
                    )
                    waits.append((f"delay queue in nat{index}", log, _says_ready(log)))
        if self.spec.start_coturn:
            turnserver = shutil.which("turnserver")
            if turnserver is None:
                raise LabError("turnserver not found: install the Debian package coturn")
            log = self._daemon(
                "pub",
                "coturn",
                [
                    turnserver,
                    "-n",
                    "--stun-only",
                    "--no-cli",
                    "--no-tls",
                    "--no-dtls",
                    *(f"--listening-ip={ip}" for ip in STUN_IPS),
                    f"--listening-port={STUN_PORT}",
                    "--log-file=stdout",
                    "--simple-log",
                    f"--pidfile={self.state_dir / 'turnserver.pid'}",
                    f"--db={self.state_dir / 'turndb'}",
                ],
                {},
            )
            waits.append(("coturn", log, self._stun_answers))
        if self.spec.start_rendezvous:
            log = self._daemon(
                "pub",
                "rendezvous",
                [self.python, "-m", "holepunch_rendezvous"],
                {
                    "HOST": RENDEZVOUS_IP,
                    "PORT": str(RENDEZVOUS_PORT),
                    # A closed lab with no route out: development mode, debug listing on.
                    "AUTH_MODE": "none",
                    "DEBUG_ENDPOINTS": "1",
                },
            )
            waits.append(("rendezvous", log, self._rendezvous_answers))
        for what, log, ready in waits:
            self._await(what, log, ready)

    def _stun_answers(self) -> bool:
        return all(stun_binding(self.ns("pub"), PEER_IP, server) for server in self.stun_servers)

    def _rendezvous_answers(self) -> bool:
        try:
            http_get_json(self.ns("pub"), RENDEZVOUS_IP, RENDEZVOUS_PORT, "/healthz", 1.0)
        except (OSError, LabError, ValueError):
            return False
        return True

    # ------------------------------------------------------------------ operations

    def list_workers(self) -> dict[str, dict[str, Any]]:
        """The rendezvous registry, fetched from inside the public namespace."""
        listing = http_get_json(
            self.ns("pub"), RENDEZVOUS_IP, RENDEZVOUS_PORT, "/debug/list_workers"
        )
        workers: dict[str, dict[str, Any]] = listing["workers"]
        return workers

    def introduce(self, initiator: str, responder: str) -> str:
        """`POST /admin/introduce` (from inside pub): a new punch session; its id."""
        status, body = http_request_json(
            self.ns("pub"),
            RENDEZVOUS_IP,
            RENDEZVOUS_PORT,
            "POST",
            "/admin/introduce",
            {"initiator": initiator, "responder": responder},
        )
        if status != 200 or not isinstance(body, dict) or not body.get("session_id"):
            raise LabError(f"POST /admin/introduce answered {status}: {body}")
        return str(body["session_id"])

    def punch_sessions(self) -> dict[str, dict[str, Any]]:
        """Every punch session the rendezvous knows (`/debug/sessions`), active and
        ended, by session id."""
        listing = http_get_json(self.ns("pub"), RENDEZVOUS_IP, RENDEZVOUS_PORT, "/debug/sessions")
        return {**listing["ended"], **listing["active"]}

    def worker_request(
        self, index: int, method: str, path: str, port: int = 8080, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """An HTTP request to the worker on host<index> (its $PORT, from its own namespace)."""
        return http_request_json(
            self.ns(f"host{index}"), "127.0.0.1", port, method, path, timeout=timeout
        )

    def forget_flows(self, index: int, destination: str) -> None:
        """Delete NAT `index`'s UDP conntrack entries towards `destination` (another NAT's
        wan address), leaving the STUN and rendezvous flows: the NAT forgets a punched
        path while keeping the mapping (an EIM NAT keeps the public port as long as one
        flow from the socket remains; a symmetric one picks a new port next time)."""
        self.run(
            f"nat{index}",
            ["conntrack", "-D", "-p", "udp", "--orig-dst", destination],
            check=False,  # exits 1 when nothing matched
        )

    def set_port_range(self, index: int, port_range: tuple[int, int]) -> None:
        """Give an eim/symmetric NAT another public port range (new flows only)."""
        kind = self.nat(index).kind
        if kind is NatKind.FULL_CONE:
            raise LabError("a fullcone NAT preserves ports: it has no port range")
        rules = iptables_rules(kind, index, port_range)
        rule = next(line for line in rules.splitlines() if "-p udp -j MASQUERADE" in line)
        replacement = rule.replace("-A POSTROUTING", "-R POSTROUTING 1", 1).split()
        self.run(f"nat{index}", ["iptables", "-t", "nat", *replacement])

    def flush_conntrack(self, index: int) -> None:
        """Forget every mapping of NAT `index` (`conntrack -F`), as a NAT reboot would."""
        self.run(f"nat{index}", ["conntrack", "-F"])

    def udp_timeout(self, index: int) -> int:
        result = self.run(f"nat{index}", ["sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout"])
        return int(result.stdout)

    def status(self) -> dict[str, Any]:
        present = set(list_namespaces())
        nats = []
        for index, nat in enumerate(self.spec.nats, start=1):
            nats.append(
                {
                    "nat": f"nat{index}",
                    "kind": nat.kind.value,
                    "wan_ip": wan_ip(index),
                    "host": f"host{index}",
                    "host_ip": host_ip(index),
                    "port_range": None if nat.kind is NatKind.FULL_CONE else self.port_range(index),
                    "udp_timeout_sec": nat.udp_timeout_sec,
                    "impairment": asdict(nat.impairment),
                }
            )
        processes = {}
        for namespace in self.namespaces:
            if namespace in present:
                processes[namespace] = [_command_line(pid) for pid in namespace_pids(namespace)]
        status: dict[str, Any] = {
            "prefix": self.prefix,
            "namespaces_present": [n for n in self.namespaces if n in present],
            "namespaces_missing": [n for n in self.namespaces if n not in present],
            "impairment_backend": self.impairment_backend,
            "rendezvous_url": self.rendezvous_url,
            "nats": nats,
            "processes": processes,
        }
        if self.spec.start_rendezvous and self.ns("pub") in present:
            try:
                status["workers"] = self.list_workers()
            except (OSError, LabError, ValueError) as error:
                status["workers_error"] = str(error)
        return status


def _says_ready(log: Path) -> Callable[[], bool]:
    return lambda: b"ready" in log.read_bytes()


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} " + raw.replace(b"\0", b" ").decode(errors="replace").strip()


async def start_service_in_namespace(
    namespace: str, module: str, env: Mapping[str, str], python: str = sys.executable
) -> ServiceProcess:
    """`python -m module` inside `namespace`, its JSON log lines collected as
    holepunch_devtools.processes.start_service does for local processes."""
    return await start_service(
        module, env, command_prefix=("ip", "netns", "exec", namespace), python=python
    )


# ---------------------------------------------------------------------- CLI


def _cli_prefix(prefix: str | None) -> str:
    # Always an explicit choice: never guess another lab (a test run's) and take it down.
    return validate_prefix(prefix or CLI_PREFIX)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the NAT lab needs root (network namespaces, iptables)")
    for tool in ("ip", "iptables", "iptables-restore", "sysctl"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} not found: install the Debian packages iproute2 and iptables")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="natlab",
        description=(
            "Hosts behind real Linux NAT routers in network namespaces: coturn on "
            f"{' and '.join(STUN_IPS)}:{STUN_PORT}, the rendezvous on "
            f"{RENDEZVOUS_IP}:{RENDEZVOUS_PORT}, host<i> behind nat<i>. See docs/natlab.md."
        ),
    )
    parser.add_argument(
        "--prefix", help=f"lab prefix (default {CLI_PREFIX}; `status` lists the labs that are up)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{up,down,status,exec}")
    up = commands.add_parser("up", help="build a lab and start coturn and the rendezvous")
    up.add_argument(
        "--nat",
        action="append",
        choices=[kind.value for kind in NatKind],
        help="a NAT (repeat; default: eim symmetric fullcone)",
    )
    up.add_argument("--delay-ms", type=int, default=0, help="delay each way on every wan link")
    up.add_argument("--loss-pct", type=float, default=0.0, help="loss each way on every wan link")
    up.add_argument("--udp-timeout", type=int, help="conntrack UDP timeout (s) in every NAT")
    up.add_argument("--no-rendezvous", action="store_true", help="do not start the rendezvous")
    down = commands.add_parser("down", help="stop and delete a lab")
    down.add_argument(
        "--stale", action="store_true", help="instead remove test labs left by dead processes"
    )
    commands.add_parser("status", help="show the lab, its processes and the registry (JSON)")
    run = commands.add_parser(
        "exec",
        help="run a command on a lab host (pub, nat<i>, host<i>), with worker variables set",
    )
    run.add_argument("host")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD")
    queue = commands.add_parser("delay-queue")  # internal: run by `up` in each NAT router
    queue.add_argument("--queue", type=int, default=0)
    queue.add_argument("--delay-ms", type=int, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "delay-queue":
            run_delay_queue(arguments.queue, arguments.delay_ms / 1000, sys.stdout)
            return 0
        _require_root()
        prefix = _cli_prefix(arguments.prefix)
        if arguments.command == "up":
            impairment = Impairment(arguments.delay_ms, arguments.loss_pct)
            kinds = arguments.nat or [kind.value for kind in NatKind]
            spec = LabSpec(
                nats=tuple(
                    NatSpec(NatKind(kind), None, arguments.udp_timeout, impairment)
                    for kind in kinds
                ),
                start_rendezvous=not arguments.no_rendezvous,
            )
            lab = Lab.create(spec, prefix)
            lab.up()
            print(json.dumps(lab.status(), indent=2))
            print("\nnext: scripts/natlab exec host1 holepunch-worker", file=sys.stderr)
        elif arguments.command == "down":
            if arguments.stale:
                removed = remove_stale_labs()
                print("removed: " + (", ".join(removed) or "nothing"))
            else:
                removed = destroy_lab(prefix)
                print(
                    f"{prefix}: " + (f"deleted {len(removed)} namespaces" if removed else "not up")
                )
        elif arguments.command == "status":
            labs = find_labs()
            if prefix not in labs:
                print(json.dumps({"prefix": prefix, "up": False, "labs": sorted(labs)}, indent=2))
                return 1
            print(json.dumps(Lab.load(prefix).status(), indent=2))
        elif arguments.command == "exec":
            if not arguments.argv:
                raise LabError("exec needs a command")
            lab = Lab.load(prefix)
            command = lab.exec_argv(arguments.host, arguments.argv)
            env = {**lab.worker_env(), **os.environ}  # the caller's variables win
            os.execvpe(command[0], command, env)
    except (LabError, ValueError) as error:
        print(f"natlab: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
