"""`make bench` end to end with 1,001 workers: it runs and reports every figure (no timing
asserts). 1,001, one more than the rendezvous allows from one address by default: every
simulated worker connects from 127.0.0.1, and the bench must lift that limit."""

from __future__ import annotations

import json
from pathlib import Path

from holepunch_devtools import bench


def test_bench_runs_past_the_per_address_limit(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = bench.main(
        ["--workers", "1001", "--repeat", "1", "--json-out", str(out), "--log-dir", str(tmp_path)]
    )
    assert code == 0
    document = json.loads(out.read_text())
    (result,) = document["results"]
    assert len(document["calibration_ms"]) == 2
    assert result["workers"] == result["registered"] == 1001 and result["failed"] == 0
    assert result["ws_impl"] == "websockets-sansio"
    assert result["cpu_ms_per_registration"] >= 0 and result["list_bytes"] > 0
    assert result["echo_p50_ms"] <= result["echo_p99_ms"] <= result["echo_max_ms"]
    log = (tmp_path / "rendezvous-websockets-sansio-1001.log").read_text().splitlines()
    events = [json.loads(line).get("event") for line in log]
    assert events.count("worker_connected") == events.count("udp_endpoint_updated") == 1001
