"""`python -m holepunch_devtools.reflection_bench` end to end, scaled down: it runs the
services as processes and reports the third party's count and the attackers' answers."""

from __future__ import annotations

import json

import pytest
from holepunch_devtools import reflection_bench


def test_reflection_bench_reports_the_third_partys_datagrams(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = reflection_bench.main(
        ["--attackers", "4", "--rate", "1", "--seconds", "2", "--settle", "1"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["answers"]["connect_request"] == 8
    assert report["answers"]["peer_introduction"] == 8  # under the per-target cap
    assert report["third_party_datagrams_in_window"] > 0
    assert report["third_party_datagrams_after_settle"] <= 60  # the victim's probe budget
    assert report["victim_disconnected"] is False
