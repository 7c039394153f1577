"""One lab's life: build its namespaces and links, start its daemons (coturn, the
rendezvous, a delay queue per impaired NAT when netem is missing), the operations tests
need while it runs, and tear it down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from holepunch_devtools.natlab.errors import LabError
from holepunch_devtools.natlab.namespaces import (
    DEFAULT_STATE_ROOT,
    command_line,
    destroy_lab,
    list_namespaces,
    namespace_pids,
    netem_available,
    run_command,
    terminate,
)
from holepunch_devtools.natlab.rules import iptables_rules, netem_arguments, nfqueue_rules
from holepunch_devtools.natlab.sockets import http_get_json, http_request_json
from holepunch_devtools.natlab.spec import LabSpec, NatKind, NatSpec
from holepunch_devtools.natlab.stun import stun_binding
from holepunch_devtools.natlab.topology import (
    PEER_IP,
    RENDEZVOUS_IP,
    RENDEZVOUS_PORT,
    STUN_IPS,
    STUN_PORT,
    default_port_range,
    host_ip,
    is_role,
    new_prefix,
    router_lan_ip,
    validate_prefix,
    wan_ip,
)
from holepunch_devtools.processes import ServiceProcess, start_service

__all__ = ["START_TIMEOUT_SEC", "Lab", "start_service_in_namespace"]

START_TIMEOUT_SEC = 20.0


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
        if not is_role(role) or (role != "pub" and int(role[-1]) > len(self.spec.nats)):
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
        run_command(["ip", "-n", self.ns(role), *arguments])

    def exec_argv(self, role: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` inside `role`'s namespace."""
        return ["ip", "netns", "exec", self.ns(role), *argv]

    def run(
        self, role: str, argv: Sequence[str], stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_command(self.exec_argv(role, argv), stdin=stdin, check=check)

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
        terminate(sorted(pids), self._children)
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
            run_command(["ip", "netns", "add", namespace])
            run_command(["ip", "-n", namespace, "link", "set", "lo", "up"])
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
                processes[namespace] = [command_line(pid) for pid in namespace_pids(namespace)]
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


async def start_service_in_namespace(
    namespace: str, module: str, env: Mapping[str, str], python: str = sys.executable
) -> ServiceProcess:
    """`python -m module` inside `namespace`, its JSON log lines collected as
    holepunch_devtools.processes.start_service does for local processes."""
    return await start_service(
        module, env, command_prefix=("ip", "netns", "exec", namespace), python=python
    )
