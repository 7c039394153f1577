"""`make bench-ui`: the fleet page with 5,000 workers, in Debian's headless Chromium.

One run, one rendezvous process (AUTH_MODE=none, DEBUG_ENDPOINTS=1, as `make demo` runs
it), 5,000 WebSocket clients registered as workers (a mix of mapping kinds and tags):

1. paint: a fresh page; time to first contentful paint (the browser's own
   `first-contentful-paint` entry) and to the first rows of the table (navigation start
   to the rows in the DOM, timed in the page).
2. filter: typing a worker's id in the search box, and choosing a mapping kind, until
   the table shows the result (input event to DOM change, timed in the page).
3. viewer cost, in the same run, the server's CPU per second (utime+stime from
   /proc/PID/stat over `--window` seconds): quiet with no page open, then with
   `--viewers` pages open in the same browser; then with churn (`--churn` workers
   leaving and as many joining each second) and those pages open, then with the churn
   and no page. The differences per viewer are what a viewer costs, quiet and under churn;
   the pages' requests to /ui/api/* are counted too.

Each run starts afresh; `--repeat` runs (3) and their median are printed. No pass/fail
(`--json-out` writes the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from holepunch_devtools.bench import cpu_ms, free_port, raise_nofile
from holepunch_devtools.processes import start_service

__all__ = ["UiBenchResult", "main", "run"]

MAPPINGS = ("endpoint_independent", "endpoint_dependent", "unknown")
TAGS = ("", "gpu", "team-a", "team-b")
CONCURRENCY = 200
# Left out before each window: the garbage the previous step left (the pages' first loads
# of a 5,000-worker table are collected a few seconds later) is not the next one's cost.
SETTLE_SEC = 4.0


@dataclass
class UiBenchResult:
    workers: int
    first_contentful_paint_ms: float
    first_rows_ms: float
    search_ms: float
    mapping_filter_ms: float
    viewers: int
    churn_per_sec: int
    quiet_cpu_ms_per_sec_no_viewer: float
    quiet_cpu_ms_per_sec_with_viewers: float
    quiet_cpu_ms_per_sec_per_viewer: float
    churn_cpu_ms_per_sec_with_viewers: float
    churn_cpu_ms_per_sec_no_viewer: float
    churn_cpu_ms_per_sec_per_viewer: float
    churn_requests_per_sec_per_viewer: float


def worker_id(n: int) -> str:
    return f"bench-{n:05d}"


async def register(base: str, n: int) -> ClientConnection:
    tag = TAGS[n % len(TAGS)]
    ws = await connect(f"{base}/ws/register/{worker_id(n)}" + (f"?tags={tag}" if tag else ""))
    update = {
        "type": "update_udp_endpoint",
        "udp_ip": f"203.0.{(n // 250) % 250}.{n % 250 + 1}",
        "udp_port": 20_000 + n % 40_000,
        "mapping": MAPPINGS[n % len(MAPPINGS)],
    }
    await ws.send(json.dumps(update))
    await ws.recv()
    return ws


async def register_all(base: str, ids: range) -> dict[int, ClientConnection]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> tuple[int, ClientConnection]:
        async with gate:
            return n, await register(base, n)

    return dict(await asyncio.gather(*(one(n) for n in ids)))


async def churn(
    base: str, sockets: dict[int, ClientConnection], per_sec: int, stop: asyncio.Event
) -> None:
    """Each second, `per_sec` workers leave and `per_sec` new ones join."""
    next_id = max(sockets) + 1
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        leaving = sorted(sockets)[:per_sec]
        await asyncio.gather(*(sockets.pop(n).close() for n in leaving))
        sockets.update(await register_all(base, range(next_id, next_id + per_sec)))
        next_id += per_sec
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (loop.time() - started)))


async def cpu_per_sec(pid: int, seconds: float) -> float:
    before, started = cpu_ms(pid), time.monotonic()
    await asyncio.sleep(seconds)  # a measuring window, not synchronisation
    return (cpu_ms(pid) - before) / (time.monotonic() - started)


# In the page: time from an input event to the table's next change.
TIME_TO_CHANGE = """
async ([selector, action, value]) => {
  const body = document.querySelector('#fleet-table tbody');
  const changed = new Promise((resolve) =>
    new MutationObserver((_, observer) => { observer.disconnect(); resolve(performance.now()); })
      .observe(body, { childList: true }));
  const element = document.querySelector(selector);
  const started = performance.now();
  if (action === 'type') { element.value = value; element.dispatchEvent(new Event('input')); }
  else { element.value = value; element.dispatchEvent(new Event('change')); }
  return (await changed) - started;
}
"""


async def measure_page(browser: Any, base: str, workers: int) -> dict[str, float]:
    page = await browser.new_page(viewport={"width": 1400, "height": 950})
    await page.goto(base + "/ui")
    await page.wait_for_selector("body[data-fleet-loaded]")
    timings = await page.evaluate(
        """() => ({
          fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1,
          rows: performance.getEntriesByName('first-rows')[0]?.startTime ?? -1,
        })"""
    )
    target = worker_id(workers // 2 + 7)
    search_ms = await page.evaluate(TIME_TO_CHANGE, ["#search", "type", target])
    rows = await page.locator("#fleet-table tbody tr").count()
    assert rows == 1, f"search for {target} showed {rows} rows"
    await page.evaluate(TIME_TO_CHANGE, ["#search", "type", ""])
    filter_ms = await page.evaluate(
        TIME_TO_CHANGE, ["#mapping-filter", "select", "endpoint_dependent"]
    )
    await page.close()
    return {
        "fcp": timings["fcp"],
        "rows": timings["rows"],
        "search": search_ms,
        "filter": filter_ms,
    }


async def run(
    workers: int, viewers: int, churn_per_sec: int, window: float, chromium: str
) -> UiBenchResult:
    from playwright.async_api import async_playwright

    port = free_port()
    raise_nofile()  # inherited by the server
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "AUTH_MODE": "none",
        "DEBUG_ENDPOINTS": "1",
        "MAX_CONNECTIONS_PER_ADDRESS": "1000000",  # every client is on 127.0.0.1
        # 5,000 keep-alive pings every 20 s would come and go across the windows.
        "WS_PING_INTERVAL_SEC": "3600",
    }
    service = await start_service("holepunch_rendezvous", env)
    base_http, base_ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    try:
        await service.wait_for_event("server_started", port=port)
        pid = service.process.pid
        sockets = await register_all(base_ws, range(workers))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
            try:
                page_figures = await measure_page(browser, base_http, workers)
                quiet_alone = await cpu_per_sec(pid, window)
                requests = [0]
                pages = []
                for _ in range(viewers):
                    page = await browser.new_page()
                    page.on(
                        "request",
                        lambda r: requests.__setitem__(0, requests[0] + ("/ui/api/" in r.url)),
                    )
                    await page.goto(base_http + "/ui")
                    await page.wait_for_selector("#live-status[data-state=live]")
                    pages.append(page)
                await cpu_per_sec(pid, SETTLE_SEC)  # the pages' first loads, then quiet
                quiet_viewed = await cpu_per_sec(pid, window)
                stop = asyncio.Event()
                churning = asyncio.create_task(churn(base_ws, sockets, churn_per_sec, stop))
                await cpu_per_sec(pid, SETTLE_SEC)  # the churn under way
                requests[0] = 0
                churn_viewed = await cpu_per_sec(pid, window)
                churn_requests = requests[0] / window
                for page in pages:
                    await page.close()
                await cpu_per_sec(pid, SETTLE_SEC)
                churn_alone = await cpu_per_sec(pid, window)
                stop.set()
                await churning
            finally:
                await browser.close()
        await asyncio.gather(*(ws.close() for ws in sockets.values()))
    finally:
        await service.stop()
    per_viewer = max(viewers, 1)
    return UiBenchResult(
        workers=workers,
        first_contentful_paint_ms=round(page_figures["fcp"], 1),
        first_rows_ms=round(page_figures["rows"], 1),
        search_ms=round(page_figures["search"], 1),
        mapping_filter_ms=round(page_figures["filter"], 1),
        viewers=viewers,
        churn_per_sec=churn_per_sec,
        quiet_cpu_ms_per_sec_no_viewer=round(quiet_alone, 1),
        quiet_cpu_ms_per_sec_with_viewers=round(quiet_viewed, 1),
        quiet_cpu_ms_per_sec_per_viewer=round((quiet_viewed - quiet_alone) / per_viewer, 2),
        churn_cpu_ms_per_sec_with_viewers=round(churn_viewed, 1),
        churn_cpu_ms_per_sec_no_viewer=round(churn_alone, 1),
        churn_cpu_ms_per_sec_per_viewer=round((churn_viewed - churn_alone) / per_viewer, 2),
        churn_requests_per_sec_per_viewer=round(churn_requests / per_viewer, 2),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=5000)
    parser.add_argument("--viewers", type=int, default=5)
    parser.add_argument(
        "--churn", type=int, default=10, help="workers leaving and joining per second"
    )
    parser.add_argument("--window", type=float, default=10.0, help="seconds per CPU measurement")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--repeat", type=int, default=3, help="runs (the median is printed)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"chromium not found at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    runs = [
        asdict(asyncio.run(run(args.workers, args.viewers, args.churn, args.window, args.chromium)))
        for _ in range(args.repeat)
    ]
    figures = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    print(f"median of {len(runs)} run(s); every run in brackets")
    for name, value in figures.items():
        print(f"{name:42} {value:<10g} {[run[name] for run in runs]}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps({"median": figures, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
