"""The introduction policy across instances sharing a real Redis: a worker's tags travel
in its stored record, so another instance applies the policy to it, in introductions and
in discovery."""

from __future__ import annotations

import json

from tests.integration.test_redis_registry import Cluster, ask, cluster
from tests.support.redis_server import redis_server

__all__ = ["cluster", "redis_server"]  # the fixtures, imported to be used here


async def test_another_instance_applies_the_policy_to_a_worker_it_does_not_hold(
    cluster: Cluster,
) -> None:
    policy = {"INTRODUCTION_POLICY": "team-a, team-b"}
    first, second = await cluster.start(**policy), await cluster.start(**policy)
    # Workers declare their tags in the URL; `Cluster.worker` takes the id as given.
    a1 = await cluster.worker(first, "a1?tags=team-a", 46001)
    await cluster.worker(first, "b1?tags=team-b", 46002)
    a2 = await cluster.worker(second, "a2?tags=team-a", 46003)

    listed = await second.workers()
    assert listed["a1"]["tags"] == ["team-a"] and listed["b1"]["tags"] == ["team-b"]

    refusal = await ask(a2, {"type": "connect_request", "peer_id": "b1"})
    assert refusal["type"] == "error" and refusal["code"] == "not_allowed"
    introduced = await ask(a2, {"type": "connect_request", "peer_id": "a1"})
    assert introduced["type"] == "peer_introduction" and introduced["peer_id"] == "a1"
    routed = json.loads(await a1.recv())  # delivered through the first instance
    assert routed["type"] == "peer_introduction" and routed["peer_id"] == "a2"

    peers = await ask(a2, {"type": "list_peers"})
    assert [peer["worker_id"] for peer in peers["peers"]] == ["a1"]
    assert peers["peers"][0]["tags"] == ["team-a"]
