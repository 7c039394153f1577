"""`make bench-cluster` end to end, small: two instances on a real redis-server (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

from holepunch_devtools import cluster_bench

from tests.support.strict import require_executable


def test_cluster_bench_registers_everyone_in_two_round_trips_each(tmp_path: Path) -> None:
    require_executable("redis-server", "install the Debian package redis-server")
    out = tmp_path / "cluster.json"
    code = cluster_bench.main(
        [
            "--workers", "60", "--repeat", "1", "--parsers", "python",
            "--json-out", str(out), "--log-dir", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["registered"] == 60 and result["failed"] == 0
    # Each registration is one key-binding check (a keyless worker may not take an id bound
    # to a key), one CONNECT and one SAVE script; nothing else went to Redis but, perhaps, a
    # heartbeat (every 5 s).
    trips = result["round_trips"]
    assert {name: n for name, n in trips.items() if name != "heartbeat"} == {
        "key_binding": 60,
        "connect": 60,
        "save": 60,
    }
    assert result["round_trips_per_registration"] == 3.0
    assert result["list_bytes"] > 0 and len(result["list_ms_runs"]) == 6
    for index in range(2):  # worker i went to instance i % 2
        log = (tmp_path / f"rendezvous-python-60-{index}.log").read_text().splitlines()
        events = [json.loads(line).get("event") for line in log]
        assert events.count("worker_connected") == 30
