"""`make soak`, shortened: 20 s of churn over two rendezvous processes sharing a real
redis-server, instance B killed with SIGKILL halfway and started again.

The soak's own checks decide (holepunch_devtools.soak: no one listed twice, no one listed
longer than the TTL after going offline, at the end exactly the connected workers with their
latest endpoints, Redis holding nothing else). This test also makes sure every kind of churn
actually happened, so a pass means something. Memory is not judged here: 20 s says nothing
about growth; the 10-minute figures are in docs/redis.md.
"""

from __future__ import annotations

from pathlib import Path

from holepunch_devtools.soak import SoakOptions, run_soak

from tests.support.strict import require_executable


async def test_churn_with_a_killed_instance_leaves_the_registry_exact(tmp_path: Path) -> None:
    redis_binary = require_executable("redis-server", "install the Debian package redis-server")
    options = SoakOptions(
        duration_sec=20.0,
        workers=60,
        ttl_sec=3.0,
        mean_lifetime_sec=2.0,
        mean_offline_sec=1.0,
        mean_update_interval_sec=0.7,
        sample_interval_sec=0.5,
        restart_delay_sec=1.0,
    )
    result = await run_soak(options, tmp_path, redis_binary)
    assert result.violations == []
    for kind in ("left", "dropped_by_worker", "replaced", "lost_to_kill"):
        assert result.counts.get(kind, 0) > 0, f"no {kind} during the soak: {result.counts}"
    assert result.counts["endpoint_acknowledged"] > result.counts["connected"]
    assert result.listings_checked >= 20
    assert 0 < result.online_at_end <= 60
    assert result.redis_keys_at_end["w"] == result.online_at_end
