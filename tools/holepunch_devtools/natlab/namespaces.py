"""The lab's namespaces and processes on this machine: running commands, finding labs,
tearing them down (also what a killed run left behind), and reading their conntrack."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from holepunch_devtools.natlab.errors import LabError
from holepunch_devtools.natlab.topology import is_role, prefix_owner_pid

__all__ = [
    "DEFAULT_STATE_ROOT",
    "STOP_TIMEOUT_SEC",
    "command_line",
    "conntrack_udp_flows",
    "destroy_lab",
    "find_labs",
    "list_namespaces",
    "namespace_pids",
    "netem_available",
    "process_alive",
    "remove_stale_labs",
    "run_command",
    "terminate",
]

DEFAULT_STATE_ROOT = Path("/run/holepunch-natlab")
STOP_TIMEOUT_SEC = 3.0


def run_command(
    argv: Sequence[str], *, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion; with `check`, a non-zero exit is a LabError with its output."""
    result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise LabError(f"`{' '.join(argv)}` exited {result.returncode}: {output}")
    return result


def list_namespaces() -> list[str]:
    output = run_command(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in output.splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    result = run_command(["ip", "netns", "pids", namespace], check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (killed, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def command_line(pid: int) -> str:
    """`<pid> <argv...>` of a running process, for status output."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} " + raw.replace(b"\0", b" ").decode(errors="replace").strip()


def find_labs() -> dict[str, list[str]]:
    """Every lab on this machine: prefix -> its namespaces."""
    labs: dict[str, list[str]] = {}
    for namespace in list_namespaces():
        prefix, _, role = namespace.rpartition("-")
        if prefix.startswith("hp-") and is_role(role):
            labs.setdefault(prefix, []).append(namespace)
    return labs


def destroy_lab(prefix: str, state_root: Path = DEFAULT_STATE_ROOT) -> list[str]:
    """Kill every process inside the lab's namespaces, delete them and the state directory.

    Works from the names alone, so it also removes what a killed run left behind.
    Returns the namespaces deleted.
    """
    namespaces = find_labs().get(prefix, [])
    pids = sorted({pid for namespace in namespaces for pid in namespace_pids(namespace)})
    terminate(pids, {})
    for namespace in namespaces:
        run_command(["ip", "netns", "del", namespace], check=False)
    shutil.rmtree(state_root / prefix, ignore_errors=True)
    return namespaces


def remove_stale_labs(state_root: Path = DEFAULT_STATE_ROOT) -> list[str]:
    """Destroy test labs (`hp-<pid>-xxxx`) whose creating process is gone."""
    removed = []
    for prefix in find_labs():
        owner = prefix_owner_pid(prefix)
        if owner is not None and not process_alive(owner):
            destroy_lab(prefix, state_root)
            removed.append(prefix)
    return removed


def terminate(pids: Sequence[int], children: Mapping[int, subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL what is left after STOP_TIMEOUT_SEC; reap our own children."""

    def alive(pid: int) -> bool:
        child = children.get(pid)
        if child is not None:
            return child.poll() is None
        return process_alive(pid)

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


def netem_available() -> bool:
    """Whether this kernel has sch_netem (tried in a throwaway namespace)."""
    probe = f"hp-{os.getpid()}-{secrets.token_hex(2)}-probe"
    run_command(["ip", "netns", "add", probe])
    try:
        result = run_command(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem"],
            check=False,
        )
        return result.returncode == 0
    finally:
        run_command(["ip", "netns", "del", probe], check=False)


def conntrack_udp_flows(namespace: str) -> list[dict[str, str]]:
    """The UDP conntrack entries of `namespace` (needs the `conntrack` tool): per entry the
    original tuple (src, dst, sport, dport) and the reply tuple (reply_src, reply_dst,
    reply_sport, reply_dport), so `reply_dst:reply_dport` is what the far end sees."""
    output = run_command(["ip", "netns", "exec", namespace, "conntrack", "-L", "-p", "udp"]).stdout
    flows = []
    for line in output.splitlines():
        pairs = re.findall(r"(\w+)=(\S+)", line)
        entry: dict[str, str] = {}
        for key, value in pairs:
            entry[f"reply_{key}" if key in entry else key] = value
        if "reply_dport" in entry:
            flows.append(entry)
    return flows
