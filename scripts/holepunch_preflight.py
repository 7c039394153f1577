"""Which effective org policies would break this deployment, and what to change: pure logic.

Fed the JSON that `gcloud org-policies describe CONSTRAINT --effective --format=json`
(Org Policy API v2: `spec.rules`) or `gcloud resource-manager org-policies describe
... --effective --format=json` (v1: `listPolicy` / `booleanPolicy`) prints, and the few
settings of the deployment that these policies touch. No I/O: holepunch_preflight_cli.py
runs gcloud and prints the findings.

Standard library only: the scripts run with any python3.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONSTRAINTS",
    "MANAGED_CONSTRAINTS",
    "Deployment",
    "Finding",
    "Policy",
    "PolicyError",
    "Verdict",
    "assess",
    "parse_policy",
]


class PolicyError(ValueError):
    """The JSON is not an org policy as gcloud prints it."""


class Verdict(enum.Enum):
    OK = "OK"
    FAIL = "FAIL"
    CHECK = "CHECK"  # could not be read or decided: a person must look


@dataclass(frozen=True)
class Policy:
    """An effective policy, reduced to what the checks need (v1 and v2 alike).

    A list constraint restricts when `allowed` or `denied` has values or `deny_all`
    is set; a boolean (or managed) constraint when `enforced`. `conditional` rules
    (tags) depend on the resource, so they cannot be decided here.
    """

    allow_all: bool = False
    deny_all: bool = False
    allowed: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()
    enforced: bool = False
    conditional: bool = False

    @property
    def restricts_values(self) -> bool:
        return not self.allow_all and (self.deny_all or bool(self.allowed) or bool(self.denied))

    def allows(self, *candidates: str) -> bool | None:
        """Whether a list policy lets a value through, given its spellings (`x`, `is:x`,
        groups that hold it); None when only unknown `in:`/`under:` groups could hold it."""
        spellings = {c for c in candidates} | {f"is:{c}" for c in candidates}
        if self.deny_all or spellings & set(self.denied):
            return False
        if self.allow_all or not self.allowed:
            return True
        if spellings & set(self.allowed):
            return True
        if any(value.startswith(("in:", "under:")) for value in self.allowed):
            return None
        return False


def _strings(values: Any, where: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise PolicyError(f"{where} must be a list of strings")
    return tuple(values)


def _parse_v2(spec: Any) -> Policy:
    if spec is None:
        return Policy()
    if not isinstance(spec, dict):
        raise PolicyError("spec must be an object")
    rules = spec.get("rules") or []
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise PolicyError("spec.rules must be a list of objects")
    allowed: list[str] = []
    denied: list[str] = []
    allow_all = deny_all = enforced = conditional = False
    for rule in rules:
        if rule.get("condition"):
            conditional = True
            continue
        allow_all |= rule.get("allowAll") is True
        deny_all |= rule.get("denyAll") is True
        enforced |= rule.get("enforce") is True
        values = rule.get("values") or {}
        if not isinstance(values, dict):
            raise PolicyError("a rule's values must be an object")
        allowed += _strings(values.get("allowedValues"), "values.allowedValues")
        denied += _strings(values.get("deniedValues"), "values.deniedValues")
    return Policy(
        allow_all=allow_all and not allowed,
        deny_all=deny_all,
        allowed=tuple(allowed),
        denied=tuple(denied),
        enforced=enforced,
        conditional=conditional,
    )


def _parse_v1(document: dict[str, Any]) -> Policy:
    boolean = document.get("booleanPolicy")
    if isinstance(boolean, dict):
        return Policy(enforced=boolean.get("enforced") is True)
    listing = document.get("listPolicy")
    if listing is None:
        return Policy()  # restoreDefault, or no policy: the constraint's default
    if not isinstance(listing, dict):
        raise PolicyError("listPolicy must be an object")
    all_values = listing.get("allValues")
    return Policy(
        allow_all=all_values == "ALLOW",
        deny_all=all_values == "DENY",
        allowed=_strings(listing.get("allowedValues"), "listPolicy.allowedValues"),
        denied=_strings(listing.get("deniedValues"), "listPolicy.deniedValues"),
    )


def parse_policy(document: Any) -> Policy:
    """A Policy from gcloud's JSON (v2 `spec`, or v1 `listPolicy`/`booleanPolicy`)."""
    if not isinstance(document, dict):
        raise PolicyError("an org policy is a JSON object")
    if "spec" in document or str(document.get("name", "")).find("/policies/") >= 0:
        return _parse_v2(document.get("spec"))
    return _parse_v1(document)


@dataclass(frozen=True)
class Deployment:
    """The settings (terraform.tfvars) that the checked policies touch."""

    project: str
    region: str = "us-central1"
    auth_mode: str = "iam"
    shared_registry: bool = False
    worker_host: str = "worker_pool"
    name_prefix: str = "holepunch"


@dataclass(frozen=True)
class Finding:
    constraint: str
    verdict: Verdict
    text: str


ALLOWED_MEMBER_DOMAINS = "iam.allowedPolicyMemberDomains"
ALLOWED_POLICY_MEMBERS = "iam.managed.allowedPolicyMembers"
ALLOWED_INGRESS = "run.allowedIngress"
ALLOWED_VPC_EGRESS = "run.allowedVPCEgress"
RESTRICT_CLOUD_NAT = "compute.restrictCloudNATUsage"
RESOURCE_LOCATIONS = "gcp.resourceLocations"
REQUIRE_INVOKER_IAM = "run.managed.requireInvokerIam"

# Managed constraints exist only in the v2 API (`gcloud org-policies`).
MANAGED_CONSTRAINTS = frozenset({ALLOWED_POLICY_MEMBERS, REQUIRE_INVOKER_IAM})

# Continent-wide location groups, by the first part of a region's name (gcp.resourceLocations).
_REGION_GROUPS = {
    "us": ("in:us-locations", "in:northamerica-locations"),
    "northamerica": ("in:northamerica-locations",),
    "southamerica": ("in:southamerica-locations",),
    "europe": ("in:europe-locations",),
    "asia": ("in:asia-locations",),
    "australia": ("in:australia-locations",),
    "me": ("in:me-locations",),
    "africa": ("in:africa-locations",),
}

ASK_FOR_EXCEPTION = (
    "ask your organisation's policy administrator for an exception on this project "
    "(a project-level policy that overrides the inherited one)"
)
# The same, starting a sentence.
ASK_FOR_EXCEPTION_SENTENCE = ASK_FOR_EXCEPTION[0].upper() + ASK_FOR_EXCEPTION[1:]
# A region's own group (in:us-central1-locations): always decidable.
_REGION_GROUP = re.compile(r"^in:[a-z]+-[a-z]+[0-9]+-locations$")


def _undecidable(policy: Policy, constraint: str) -> Finding | None:
    if policy.conditional:
        return Finding(
            constraint,
            Verdict.CHECK,
            "the policy has conditional rules (tags): whether they apply to this project's "
            f"resources cannot be told from here; read `gcloud org-policies describe {constraint} "
            "--effective` yourself",
        )
    return None


def _member_domains(policy: Policy, deployment: Deployment) -> Finding:
    if not policy.restricts_values:
        return Finding(ALLOWED_MEMBER_DOMAINS, Verdict.OK, "any member may be granted roles")
    return Finding(
        ALLOWED_MEMBER_DOMAINS,
        Verdict.OK,
        "IAM grants are limited to your organisation's domains: Terraform grants no role to "
        "allUsers (token mode turns the invoker check off instead), so the deployment is "
        "unaffected; every member you list in rendezvous_invokers must belong to an allowed "
        "domain, or its grant fails at apply",
    )


def _policy_members(policy: Policy, deployment: Deployment) -> Finding:
    if not policy.enforced:
        return Finding(ALLOWED_POLICY_MEMBERS, Verdict.OK, "not enforced")
    return Finding(
        ALLOWED_POLICY_MEMBERS,
        Verdict.OK,
        "IAM grants are limited to the allowed members: Terraform grants no role to allUsers, "
        "so the deployment is unaffected; every member of rendezvous_invokers must be "
        "allowed, or its grant fails at apply",
    )


def _require_invoker_iam(policy: Policy, deployment: Deployment) -> Finding:
    if not policy.enforced:
        return Finding(REQUIRE_INVOKER_IAM, Verdict.OK, "not enforced")
    if deployment.auth_mode == "token":
        return Finding(
            REQUIRE_INVOKER_IAM,
            Verdict.FAIL,
            'auth_mode = "token" needs the rendezvous reachable without a Google identity '
            "(invoker_iam_disabled = true), which this policy refuses: the rendezvous will "
            'not deploy. Use auth_mode = "iam" (the default), or ' + ASK_FOR_EXCEPTION,
        )
    return Finding(
        REQUIRE_INVOKER_IAM,
        Verdict.OK,
        'enforced; auth_mode = "iam" keeps the invoker check on, as it requires',
    )


def _ingress(policy: Policy, deployment: Deployment) -> Finding:
    needed = ["all"]  # the rendezvous: workers reach it from Cloud NAT's public addresses
    if deployment.worker_host == "service":
        needed.append("internal")
    refused = [value for value in needed if policy.allows(value) is False]
    unknown = [value for value in needed if policy.allows(value) is None]
    if refused:
        who = {
            "all": "the rendezvous (ingress all: workers and operators reach it over the "
            "internet, behind IAM)",
            "internal": 'the worker service (worker_host = "service", ingress internal)',
        }
        return Finding(
            ALLOWED_INGRESS,
            Verdict.FAIL,
            "Cloud Run will refuse "
            + " and ".join(who[value] for value in refused)
            + f". Allowed: {', '.join(policy.allowed) or 'none'}. "
            + (
                'For the worker, worker_host = "worker_pool" (the default) has no ingress at '
                "all; otherwise " + ASK_FOR_EXCEPTION
                if "internal" in refused
                else ASK_FOR_EXCEPTION_SENTENCE
            ),
        )
    if unknown:
        return Finding(
            ALLOWED_INGRESS,
            Verdict.CHECK,
            f"ingress {', '.join(unknown)} is needed; the allowed values "
            f"({', '.join(policy.allowed)}) name groups this check cannot expand",
        )
    return Finding(ALLOWED_INGRESS, Verdict.OK, f"allows ingress {', '.join(needed)}")


def _vpc_egress(policy: Policy, deployment: Deployment) -> Finding:
    if not policy.restricts_values:
        return Finding(ALLOWED_VPC_EGRESS, Verdict.OK, "any VPC egress setting is allowed")
    problems: list[str] = []
    if policy.allows("all-traffic") is False:
        problems.append(
            "the worker needs all-traffic egress (everything through Cloud NAT, so its STUN "
            "answers and peers see the NAT's endpoint-independent mapping): it will not deploy"
        )
    if deployment.shared_registry:
        if policy.allows("private-ranges-only") is False:
            problems.append(
                "the rendezvous needs private-ranges-only egress to reach Memorystore: it will "
                "not deploy"
            )
    else:
        problems.append(
            "the rendezvous has no VPC egress without the shared registry, and an enforced "
            "run.allowedVPCEgress makes Cloud Run require VPC egress on every revision: it "
            "will not deploy (shared_registry gives it private-ranges-only egress)"
        )
    if problems:
        return Finding(
            ALLOWED_VPC_EGRESS,
            Verdict.FAIL,
            "; ".join(problems)
            + f". Allowed: {', '.join(policy.allowed) or 'none'}. "
            + ASK_FOR_EXCEPTION_SENTENCE,
        )
    return Finding(ALLOWED_VPC_EGRESS, Verdict.OK, "allows the egress settings used here")


def _cloud_nat(policy: Policy, deployment: Deployment) -> Finding:
    if not policy.restricts_values:
        return Finding(RESTRICT_CLOUD_NAT, Verdict.OK, "any subnetwork may use Cloud NAT")
    subnet = (
        f"projects/{deployment.project}/regions/{deployment.region}/subnetworks/"
        f"{deployment.name_prefix}-workers"
    )
    verdict = policy.allows(subnet, f"under:projects/{deployment.project}")
    if verdict is True:
        return Finding(RESTRICT_CLOUD_NAT, Verdict.OK, f"allows Cloud NAT on {subnet}")
    if verdict is None:
        return Finding(
            RESTRICT_CLOUD_NAT,
            Verdict.CHECK,
            f"Cloud NAT is limited to {', '.join(policy.allowed)}: check that {subnet} is "
            "under one of them",
        )
    return Finding(
        RESTRICT_CLOUD_NAT,
        Verdict.FAIL,
        f"Cloud NAT may not serve {subnet}: creating the NAT gateway will fail, and without "
        "it the workers have no way to the internet. Ask for that subnetwork (or "
        f"under:projects/{deployment.project}) to be added to the policy's allowed values",
    )


def _locations(policy: Policy, deployment: Deployment) -> Finding:
    if not policy.restricts_values:
        return Finding(RESOURCE_LOCATIONS, Verdict.OK, "any location is allowed")
    region = deployment.region
    groups = _REGION_GROUPS.get(region.split("-")[0], ())
    verdict = policy.allows(region, f"in:{region}-locations", *groups)
    known_groups = {g for continent in _REGION_GROUPS.values() for g in continent}
    if verdict is None and all(
        not value.startswith("in:") or value in known_groups or _REGION_GROUP.match(value)
        for value in policy.allowed
    ):
        verdict = False  # every group is one whose regions are known, and none holds region
    if verdict is True:
        return Finding(RESOURCE_LOCATIONS, Verdict.OK, f"allows {region}")
    if verdict is None:
        return Finding(
            RESOURCE_LOCATIONS,
            Verdict.CHECK,
            f"locations are limited to {', '.join(policy.allowed)}: check that {region} is "
            "in one of them",
        )
    return Finding(
        RESOURCE_LOCATIONS,
        Verdict.FAIL,
        f"{region} is not an allowed location: the services, subnet, NAT, repository and "
        f"state bucket would all be refused. Set region (and scripts/bootstrap --region) to "
        f"one of: {', '.join(policy.allowed)}",
    )


_CHECKS: dict[str, Callable[[Policy, Deployment], Finding]] = {
    ALLOWED_MEMBER_DOMAINS: _member_domains,
    ALLOWED_POLICY_MEMBERS: _policy_members,
    REQUIRE_INVOKER_IAM: _require_invoker_iam,
    ALLOWED_INGRESS: _ingress,
    ALLOWED_VPC_EGRESS: _vpc_egress,
    RESTRICT_CLOUD_NAT: _cloud_nat,
    RESOURCE_LOCATIONS: _locations,
}

CONSTRAINTS: tuple[str, ...] = tuple(_CHECKS)


def assess(policies: Mapping[str, Policy | str], deployment: Deployment) -> list[Finding]:
    """One finding per constraint in CONSTRAINTS. A string in place of a Policy is why it
    could not be read (gcloud's error), which becomes a CHECK."""
    findings: list[Finding] = []
    for constraint in CONSTRAINTS:
        policy = policies.get(constraint, "not read")
        if isinstance(policy, str):
            findings.append(
                Finding(
                    constraint,
                    Verdict.CHECK,
                    f"could not read the effective policy ({policy}); reading it needs "
                    "orgpolicy.policies.get on the project (roles/orgpolicy.policyViewer) and, "
                    "for managed constraints, the Organization Policy API",
                )
            )
            continue
        findings.append(_undecidable(policy, constraint) or _CHECKS[constraint](policy, deployment))
    return findings
