"""The page's HTTP routes: the page and its assets, its JSON, and the live stream.

Served only while the debug endpoints are on, to the operator: the same guard as
/debug/* (app.operator_only), which also accepts a browser's Basic login (login.py).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from holepunch_rendezvous.handler import Lookups
from holepunch_rendezvous.ui.feed import LiveFeed, Viewer
from holepunch_rendezvous.ui.fleet import FleetQuery, QueryError, fleet_row, select

__all__ = ["UI_ROUTES"]

KEEPALIVE_SEC = 15.0
# Every asset the page has, by name: nothing else under /ui/static is served.
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
NO_STORE = {"Cache-Control": "no-store"}


def _read_asset(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("static", name).read_bytes()


# Read once at import: small, and packaged with the service (no CDN, works offline).
PAGE = _read_asset("index.html")
ASSET_BODIES = {name: _read_asset(name) for name in ASSETS}


def _feed(request: Request) -> LiveFeed:
    feed: LiveFeed = request.app.state.rendezvous.feed
    return feed


async def page(request: Request) -> Response:
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=NO_STORE)


async def asset(request: Request) -> Response:
    name: str = request.path_params["name"]
    if name not in ASSETS:
        return JSONResponse({"error": "not_found", "detail": "no such asset"}, status_code=404)
    return Response(ASSET_BODIES[name], media_type=ASSETS[name], headers=NO_STORE)


async def workers(request: Request) -> Response:
    try:
        query = FleetQuery.from_params(request.query_params)
    except QueryError as error:
        return JSONResponse({"error": "bad_request", "detail": str(error)}, status_code=400)
    feed = _feed(request)
    version = feed.version
    body = feed.tables.get(query, version)
    if body is None:
        everyone = await request.app.state.rendezvous.store.page(None, None)
        body = orjson.dumps(select(everyone.records, query))
        feed.tables.put(query, version, body)
    return Response(body, media_type="application/json", headers=NO_STORE)


async def worker(request: Request) -> Response:
    """One worker's drill-down: its row, its sessions and relay share, its last events."""
    rendezvous = request.app.state.rendezvous
    worker_id: str = request.path_params["worker_id"]
    found = await rendezvous.store.prepare(Lookups(worker_ids=(worker_id,)), rendezvous.sessions)
    record = found.get(worker_id)
    feed = _feed(request)
    body = {
        "worker_id": worker_id,
        "connected": record is not None,
        "row": None if record is None else fleet_row(record),
        **feed.paths.of_worker(worker_id),
        "events": feed.recent_of(worker_id),
    }
    return JSONResponse(body, headers=NO_STORE)


async def paths(request: Request) -> Response:
    return JSONResponse(_feed(request).paths.picture(), headers=NO_STORE)


async def live(request: Request) -> Response:
    """Server-Sent Events: `hello`, then `changes` batches as they happen, `resync` when
    this viewer fell behind, and a comment line every KEEPALIVE_SEC of quiet."""
    feed = _feed(request)
    viewer = feed.add_viewer()
    if viewer is None:
        return JSONResponse(
            {"error": "too_many_viewers", "detail": f"at most {feed.max_viewers} viewers"},
            status_code=503,
        )
    headers = {**NO_STORE, "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(feed, viewer), media_type="text/event-stream", headers=headers)


async def _stream(feed: LiveFeed, viewer: Viewer) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 1000\n" + feed.hello()
        while not viewer.closed:
            frames = await viewer.next_frames(KEEPALIVE_SEC)
            if viewer.closed:
                return
            yield frames or b": keep-alive\n\n"
    finally:
        feed.remove_viewer(viewer)


# (path, handler): app.py mounts each behind the operator guard, GET only.
UI_ROUTES: list[tuple[str, Callable[[Request], Awaitable[Response]]]] = [
    ("/ui", page),
    ("/ui/static/{name}", asset),
    ("/ui/api/workers", workers),
    ("/ui/api/workers/{worker_id}", worker),
    ("/ui/api/paths", paths),
    ("/ui/api/live", live),
]
