#!/usr/bin/env python3
"""scripts/bootstrap preflight: read the effective org policies that commonly break this
deployment and say, in plain words, what will fail and what to change.

Nothing is created or changed. For each constraint it runs
`gcloud org-policies describe CONSTRAINT --effective --project=P --format=json`, falling
back to `gcloud resource-manager org-policies describe` (the v1 API) for the constraints
that are not managed ones; the decisions are in holepunch_preflight.py.

Give the settings you will put in terraform.tfvars: they decide which policies matter
(token mode and required invoker IAM, the shared registry and VPC egress, the worker's
host and ingress, the region and resource locations).

Exit status: 0 when nothing will fail (CHECK lines still need a look), 1 when something
will, 2 for a usage error or a missing prerequisite.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from holepunch_cli import PROJECT_ORDER, Gcloud, resolve_project
from holepunch_preflight import (
    CONSTRAINTS,
    MANAGED_CONSTRAINTS,
    Deployment,
    Policy,
    PolicyError,
    Verdict,
    assess,
    parse_policy,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bootstrap preflight",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--project", help=f"project ID (default: {PROJECT_ORDER})")
    parser.add_argument(
        "--region", default="us-central1", help="terraform.tfvars region (default us-central1)"
    )
    parser.add_argument(
        "--auth-mode",
        choices=("iam", "token"),
        default="iam",
        help="terraform.tfvars auth_mode (default iam)",
    )
    parser.add_argument(
        "--shared-registry",
        action="store_true",
        help="shared_registry.enabled = true in terraform.tfvars",
    )
    parser.add_argument(
        "--worker-host",
        choices=("worker_pool", "service"),
        default="worker_pool",
        help="terraform.tfvars worker_host (default worker_pool)",
    )
    parser.add_argument(
        "--name-prefix",
        default="holepunch",
        help="terraform.tfvars name_prefix (default holepunch)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the gcloud commands instead of running them"
    )
    return parser.parse_args(argv)


def describe_commands(constraint: str, project: str) -> list[list[str]]:
    """The gcloud commands that read a constraint's effective policy, in the order tried."""
    tail = [constraint, "--effective", f"--project={project}", "--format=json"]
    commands = [["org-policies", "describe", *tail]]
    if constraint not in MANAGED_CONSTRAINTS:
        commands.append(["resource-manager", "org-policies", "describe", *tail])
    return commands


def read_policy(gcloud: Gcloud, constraint: str, project: str) -> Policy | str:
    """The effective policy, or why it could not be read (gcloud's last error line)."""
    reason = "no answer"
    for command in describe_commands(constraint, project):
        result = gcloud.run(command)
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            reason = lines[-1] if lines else f"gcloud exited {result.returncode}"
            continue
        try:
            return parse_policy(json.loads(result.stdout or "{}"))
        except (json.JSONDecodeError, PolicyError) as error:
            reason = f"unreadable answer: {error}"
    return reason


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    gcloud = Gcloud(args.dry_run)
    project = resolve_project(args.project, gcloud)
    deployment = Deployment(
        project=project,
        region=args.region,
        auth_mode=args.auth_mode,
        shared_registry=args.shared_registry,
        worker_host=args.worker_host,
        name_prefix=args.name_prefix,
    )
    if args.dry_run:
        for constraint in CONSTRAINTS:
            for command in describe_commands(constraint, project):
                gcloud.show(command)
        return 0

    print(
        f"preflight: project {project}, region {args.region}, auth_mode {args.auth_mode}, "
        f"worker_host {args.worker_host}, shared registry "
        f"{'on' if args.shared_registry else 'off'}",
        flush=True,
    )
    policies = {c: read_policy(gcloud, c, project) for c in CONSTRAINTS}
    findings = assess(policies, deployment)
    for finding in findings:
        print(f"{finding.verdict.value:<5} {finding.constraint}: {finding.text}")
    failed = sum(f.verdict is Verdict.FAIL for f in findings)
    unsure = sum(f.verdict is Verdict.CHECK for f in findings)
    print(
        f"{failed} will fail, {unsure} to check by hand, "
        f"{len(findings) - failed - unsure} fine"
        + ("" if failed else ": nothing found that would stop `terraform apply`")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
