"""holepunch_devtools.list_render: the in-process list-rendering figure in docs/benchmark.md."""

from __future__ import annotations

import pytest
from holepunch_devtools.list_render import main, render_times_ms
from holepunch_devtools.listing import parse_listing


def test_the_timed_body_lists_every_record_once_with_its_endpoint_and_times() -> None:
    first, later, body = render_times_ms(50, repeat=2)
    assert first > 0 and later > 0
    listed = parse_listing(body)  # refuses a worker listed twice
    assert listed["connected_workers_count"] == 50
    assert sorted(listed["workers"]) == [f"w{i:06d}" for i in range(50)]
    entry = listed["workers"]["w000007"]
    assert (entry["stun_reported_udp_ip"], entry["stun_reported_udp_port"]) == (
        "203.0.113.7",
        1031,
    )
    assert entry["connected_since"].endswith("+00:00")
    assert entry["udp_endpoint_updated_at"] > entry["connected_since"]


def test_command_line_prints_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workers", "20", "--repeat", "1"]) == 0
    assert capsys.readouterr().out.startswith("list of 20 rendered in-process: first ")
    with pytest.raises(SystemExit):
        main(["--workers", "0"])
