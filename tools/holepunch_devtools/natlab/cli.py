"""`scripts/natlab` (`python -m holepunch_devtools.natlab`): up, down, status, exec, and the
internal delay-queue command `up` runs in each NAT router that needs one."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence

from holepunch_devtools.natlab.delay_queue import run_delay_queue
from holepunch_devtools.natlab.errors import LabError
from holepunch_devtools.natlab.lab import Lab
from holepunch_devtools.natlab.namespaces import destroy_lab, find_labs, remove_stale_labs
from holepunch_devtools.natlab.spec import Impairment, LabSpec, NatKind, NatSpec
from holepunch_devtools.natlab.topology import (
    CLI_PREFIX,
    RENDEZVOUS_IP,
    RENDEZVOUS_PORT,
    STUN_IPS,
    STUN_PORT,
    validate_prefix,
)

__all__ = ["main"]


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
