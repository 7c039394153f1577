"""scripts/holepunch_preflight.py: gcloud's org-policy JSON in, plain-words findings out (no I/O)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.conftest import SCRIPTS


@pytest.fixture(scope="module")
def pf() -> Iterator[Any]:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import holepunch_preflight

        yield holepunch_preflight
    finally:
        sys.path.remove(str(SCRIPTS))


def v2(*rules: dict[str, Any]) -> dict[str, Any]:
    """What `gcloud org-policies describe X --effective --format=json` prints."""
    return {"name": "projects/123/policies/x", "spec": {"rules": list(rules)}}


def allowed(*values: str) -> dict[str, Any]:
    return v2({"values": {"allowedValues": list(values)}})


def findings(pf: Any, policies: dict[str, Any], **settings: Any) -> dict[str, Any]:
    parsed = {
        name: doc if isinstance(doc, str) else pf.parse_policy(doc)
        for name, doc in policies.items()
    }
    everything = {c: parsed.get(c, pf.parse_policy(v2())) for c in pf.CONSTRAINTS}
    deployment = pf.Deployment(project="p-1", **settings)
    return {f.constraint: f for f in pf.assess(everything, deployment)}


def test_no_policy_anywhere_passes_everything(pf: Any) -> None:
    result = findings(pf, {})
    assert set(result) == set(pf.CONSTRAINTS)
    assert {f.verdict for f in result.values()} == {pf.Verdict.OK}


def test_v1_and_v2_answers_parse_alike(pf: Any) -> None:
    v1_list = {
        "constraint": "constraints/run.allowedIngress",
        "listPolicy": {"allowedValues": ["internal"]},
    }
    assert pf.parse_policy(v1_list) == pf.parse_policy(allowed("internal"))
    v1_bool = {"constraint": "constraints/x", "booleanPolicy": {"enforced": True}}
    assert pf.parse_policy(v1_bool).enforced
    assert pf.parse_policy(v2({"enforce": True})).enforced
    assert pf.parse_policy({"constraint": "constraints/x", "restoreDefault": {}}) == pf.Policy()
    assert pf.parse_policy({"listPolicy": {"allValues": "DENY"}}).deny_all


@pytest.mark.parametrize(
    "document",
    [
        [],
        "spec",
        {"spec": {"rules": "all"}},
        {"spec": {"rules": [{"values": {"allowedValues": [1]}}]}},
    ],
)
def test_garbage_is_a_policy_error(pf: Any, document: Any) -> None:
    with pytest.raises(pf.PolicyError):
        pf.parse_policy(document)


def test_ingress_without_all_stops_the_rendezvous(pf: Any) -> None:
    result = findings(pf, {"run.allowedIngress": allowed("internal")})["run.allowedIngress"]
    assert result.verdict is pf.Verdict.FAIL
    assert "rendezvous" in result.text and "exception" in result.text
    fine = findings(pf, {"run.allowedIngress": allowed("is:all", "internal")})
    assert fine["run.allowedIngress"].verdict is pf.Verdict.OK


def test_ingress_internal_matters_only_for_a_worker_service(pf: Any) -> None:
    policy = {"run.allowedIngress": allowed("all")}
    assert findings(pf, policy)["run.allowedIngress"].verdict is pf.Verdict.OK
    as_service = findings(pf, policy, worker_host="service")["run.allowedIngress"]
    assert as_service.verdict is pf.Verdict.FAIL and "worker_pool" in as_service.text


def test_vpc_egress_needs_all_traffic_and_egress_on_the_rendezvous(pf: Any) -> None:
    both = {"run.allowedVPCEgress": allowed("private-ranges-only", "all-traffic")}
    # Enforced, and the rendezvous has no VPC egress without the shared registry.
    without_registry = findings(pf, both)["run.allowedVPCEgress"]
    assert without_registry.verdict is pf.Verdict.FAIL
    assert "no VPC egress" in without_registry.text
    assert findings(pf, both, shared_registry=True)["run.allowedVPCEgress"].verdict is pf.Verdict.OK
    private_only = {"run.allowedVPCEgress": allowed("private-ranges-only")}
    worker = findings(pf, private_only, shared_registry=True)["run.allowedVPCEgress"]
    assert worker.verdict is pf.Verdict.FAIL and "all-traffic" in worker.text


def test_cloud_nat_restricted_to_other_subnets_fails(pf: Any) -> None:
    other = {
        "compute.restrictCloudNATUsage": allowed("projects/p-1/regions/us-central1/subnetworks/x")
    }
    result = findings(pf, other)["compute.restrictCloudNATUsage"]
    assert result.verdict is pf.Verdict.FAIL
    assert "projects/p-1/regions/us-central1/subnetworks/holepunch-workers" in result.text
    ours = {"compute.restrictCloudNATUsage": allowed("under:projects/p-1")}
    assert findings(pf, ours)["compute.restrictCloudNATUsage"].verdict is pf.Verdict.OK
    folder = {"compute.restrictCloudNATUsage": allowed("under:folders/42")}
    assert findings(pf, folder)["compute.restrictCloudNATUsage"].verdict is pf.Verdict.CHECK


@pytest.mark.parametrize(
    ("values", "region", "verdict"),
    [
        (["in:us-locations"], "us-central1", "OK"),
        (["in:europe-west4-locations"], "europe-west4", "OK"),
        (["in:europe-locations"], "us-central1", "FAIL"),
        (["in:eu-locations"], "us-central1", "CHECK"),  # a group this check cannot expand
        (["europe-west1"], "us-central1", "FAIL"),
    ],
)
def test_resource_locations(pf: Any, values: list[str], region: str, verdict: str) -> None:
    result = findings(pf, {"gcp.resourceLocations": allowed(*values)}, region=region)
    assert result["gcp.resourceLocations"].verdict is pf.Verdict[verdict]


def test_denied_location_fails_even_inside_an_allowed_group(pf: Any) -> None:
    policy = v2({"values": {"allowedValues": ["in:us-locations"], "deniedValues": ["us-central1"]}})
    result = findings(pf, {"gcp.resourceLocations": policy})["gcp.resourceLocations"]
    assert result.verdict is pf.Verdict.FAIL


def test_required_invoker_iam_refuses_token_mode_only(pf: Any) -> None:
    enforced = {"run.managed.requireInvokerIam": v2({"enforce": True})}
    token = findings(pf, enforced, auth_mode="token")["run.managed.requireInvokerIam"]
    assert token.verdict is pf.Verdict.FAIL and 'auth_mode = "iam"' in token.text
    assert findings(pf, enforced)["run.managed.requireInvokerIam"].verdict is pf.Verdict.OK


def test_member_domains_warn_about_invokers_without_failing(pf: Any) -> None:
    result = findings(pf, {"iam.allowedPolicyMemberDomains": allowed("C0abc123")})
    finding = result["iam.allowedPolicyMemberDomains"]
    assert finding.verdict is pf.Verdict.OK and "rendezvous_invokers" in finding.text


def test_unreadable_and_conditional_policies_need_a_person(pf: Any) -> None:
    result = findings(
        pf,
        {
            "run.allowedIngress": "PERMISSION_DENIED",
            "gcp.resourceLocations": v2(
                {"condition": {"expression": "resource.matchTag('a/b', 'c')"}, "denyAll": True}
            ),
        },
    )
    assert result["run.allowedIngress"].verdict is pf.Verdict.CHECK
    assert "PERMISSION_DENIED" in result["run.allowedIngress"].text
    assert result["gcp.resourceLocations"].verdict is pf.Verdict.CHECK
