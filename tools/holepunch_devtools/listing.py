"""Reading a rendezvous's JSON endpoints from the benchmarks and the soak.

`parse_listing` refuses a `/debug/list_workers` body that names a worker twice: a plain
`json.loads` would keep the last one silently, and "listed exactly once" is what the
shared-registry checks are about.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from holepunch_devtools.bench import http_get

__all__ = ["DuplicateKey", "fetch_listing", "fetch_paged", "get_json", "parse_listing"]


class DuplicateKey(ValueError):
    """A worker listed twice (in one body, or on two pages)."""


def parse_listing(body: bytes) -> dict[str, Any]:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            repeated = sorted(key for key, count in Counter(keys).items() if count > 1)
            raise DuplicateKey(f"listed twice: {repeated[:5]}")
        return dict(pairs)

    parsed: dict[str, Any] = json.loads(body, object_pairs_hook=unique)
    return parsed


async def _get_ok(port: int, path: str) -> bytes:
    status, body = await http_get(port, path)
    if status != 200:
        raise RuntimeError(f"GET {path} on {port} answered {status}: {body[:200]!r}")
    return body


async def get_json(port: int, path: str) -> Any:
    return json.loads(await _get_ok(port, path))


async def fetch_listing(port: int, path: str = "/debug/list_workers") -> dict[str, Any]:
    return parse_listing(await _get_ok(port, path))


async def fetch_paged(port: int, limit: int = 200) -> dict[str, Any]:
    """Every page of the listing, checking that no worker appears on two pages."""
    workers: dict[str, Any] = {}
    cursor = ""
    while True:
        page = await fetch_listing(port, f"/debug/list_workers?limit={limit}&cursor={cursor}")
        repeated = set(workers) & set(page["workers"])
        if repeated:
            raise DuplicateKey(f"listed on two pages: {sorted(repeated)[:5]}")
        workers.update(page["workers"])
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return workers
