"""holepunch_devtools.list_render: the in-process list-rendering figure in docs/benchmark.md."""

from __future__ import annotations

import json

import pytest
from holepunch_devtools.list_render import main, render_times_ms
from holepunch_rendezvous.app import FastJSONResponse


def test_renders_every_record_and_reports_positive_times() -> None:
    first, later, size = render_times_ms(50, repeat=2)
    assert first > 0 and later > 0
    # The body grows with the records: 50 listed entries of a few hundred bytes each.
    assert 50 * 300 < size < 50 * 1000
    assert render_times_ms(100, repeat=1)[2] > size


def test_the_rendered_body_is_the_endpoint_json_shape() -> None:
    body = bytes(FastJSONResponse({"connected_workers_count": 0, "workers": {}}).body)
    assert json.loads(body) == {"connected_workers_count": 0, "workers": {}}


def test_command_line_prints_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workers", "20", "--repeat", "1"]) == 0
    assert capsys.readouterr().out.startswith("list of 20 rendered in-process: first ")
    with pytest.raises(SystemExit):
        main(["--workers", "0"])
