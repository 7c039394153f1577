"""The bench's figures that need no servers (its end-to-end run: tests/integration/test_bench_smoke.py)."""

from __future__ import annotations

from holepunch_devtools import bench


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 0.50) == 50.0
    assert bench.percentile(values, 0.99) == 99.0
    assert bench.percentile([7.0], 0.99) == 7.0
