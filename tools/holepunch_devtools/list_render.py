"""How long the rendezvous takes to render `/debug/list_workers`, in-process.

The body only (`Rendezvous.listing`, the app's own, then `FastJSONResponse`), no HTTP
and no load generator, so it isolates the formatting cost: the first listing of the
records, and later ones (best of `--repeat`), of `--workers` records that each have an
endpoint. `python -m holepunch_devtools.list_render --workers 5000`.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Sequence

from holepunch_protocol import MappingBehaviour, UpdateUdpEndpoint
from holepunch_rendezvous.app import FastJSONResponse, Rendezvous

__all__ = ["main", "render_times_ms"]


def render_times_ms(workers: int, repeat: int) -> tuple[float, float, bytes]:
    """(first listing ms, best later listing ms, the body) for `workers` records."""
    rendezvous = Rendezvous()
    started = time.time()
    for i in range(workers):
        worker_id = f"w{i:06d}"
        rendezvous.registry.connect(worker_id, i, "10.0.0.1", 1024 + i % 60000, started + i / 1e3)
        endpoint = UpdateUdpEndpoint(
            "203.0.113.7", 1024 + i % 60000, MappingBehaviour.ENDPOINT_INDEPENDENT
        )
        rendezvous.registry.update_udp_endpoint(worker_id, i, endpoint, started + 5 + i / 1e3)
    page = rendezvous.registry.page(limit=None, cursor=None)

    def listing() -> bytes:
        return bytes(FastJSONResponse(rendezvous.listing(page, paged=False)).body)

    first = timeit.timeit(listing, number=1)
    later = min(timeit.repeat(listing, number=1, repeat=repeat))
    return first * 1e3, later * 1e3, listing()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="holepunch-list-render", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=5000, help="records (default %(default)s)")
    parser.add_argument(
        "--repeat", type=int, default=30, help="later listings (default %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.repeat < 1:
        parser.error("--workers and --repeat must be at least 1")
    first, later, body = render_times_ms(args.workers, args.repeat)
    print(
        f"list of {args.workers} rendered in-process: first {first:.1f} ms, "
        f"later (best of {args.repeat}) {later:.1f} ms, {len(body) / 1000:.0f} KB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
