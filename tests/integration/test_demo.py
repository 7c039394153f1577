"""`make demo` end to end: two worker processes register their UDP endpoints, and an HTTP
request from the first worker's side reaches a server behind the second over the data plane
(SOCKS_LISTEN, EXPOSE_PORTS)."""

from __future__ import annotations

import re

import pytest
from holepunch_devtools.demo import run_demo


async def test_demo_registers_both_workers_and_stops_cleanly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await run_demo(workers=2, keep_running=False, timeout=30, verbose=False)
    out = capsys.readouterr().out
    assert code == 0, out
    rows = re.findall(
        r"^(demo-worker-\d)\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:(\d+)\s+endpoint_independent\s+pong in",
        out,
        re.MULTILINE,
    )
    assert sorted(worker for worker, _ in rows) == ["demo-worker-1", "demo-worker-2"], out
    assert len({port for _, port in rows}) == 2
    assert re.search(r"GET http://demo-worker-2\.holepunch:\d+/demo", out), out
    assert "  | HTTP/1.0 200 OK" in out, out
    assert "  | hello from behind demo-worker-2: you asked for /demo" in out, out
    assert out.count("exited with status 0") == 3, out
