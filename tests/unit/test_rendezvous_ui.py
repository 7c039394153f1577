"""The fleet page's pure parts: table queries, change batches, the paths picture, the
browser login rule and a viewer's bounded backlog. No sockets."""

from __future__ import annotations

import asyncio
import base64

import pytest
from holepunch_protocol import MappingBehaviour
from holepunch_rendezvous.registry import UdpEndpoint, WorkerRecord
from holepunch_rendezvous.ui.changes import (
    ChangeKind,
    FleetChange,
    decode_batch,
    encode_batch,
    worker_left,
)
from holepunch_rendezvous.ui.feed import LiveFeed, Viewer
from holepunch_rendezvous.ui.fleet import FleetCache, FleetQuery, QueryError, select
from holepunch_rendezvous.ui.login import browser_login
from holepunch_rendezvous.ui.paths import PathBook

from tests.support.rendezvous import eventually

TOKEN = "admin-token-0123456789"


def record(
    worker_id: str, mapping: MappingBehaviour | None, tags: tuple[str, ...] = ()
) -> WorkerRecord:
    endpoint = None if mapping is None else UdpEndpoint("203.0.113.5", 4000, mapping)
    return WorkerRecord(
        worker_id, 1, "198.51.100.1", 1, 1_700_000_000.0, udp_endpoint=endpoint, tags=tags
    )


def test_select_filters_pages_and_counts_the_whole_fleet() -> None:
    fleet = [
        record("a", MappingBehaviour.ENDPOINT_INDEPENDENT, ("gpu",)),
        record("b", MappingBehaviour.ENDPOINT_DEPENDENT),
        record("c", None, ("gpu", "ops")),
    ]
    body = select(fleet, FleetQuery(tag="gpu", limit=1))
    assert body["total"] == 3 and body["matched"] == 2
    assert [row["worker_id"] for row in body["rows"]] == ["a"]
    assert body["tags"] == {"gpu": 2, "ops": 1}
    assert body["mappings"]["no_endpoint"] == 1
    assert [r["worker_id"] for r in select(fleet, FleetQuery(mapping="no_endpoint"))["rows"]] == [
        "c"
    ]
    assert select(fleet, FleetQuery(text="203.0.113.5:4000"))["matched"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "1e3"},
        {"offset": "-1"},
        {"mapping": "cone"},
        {"q": "x" * 201},
    ],
)
def test_a_bad_query_names_its_parameter(params: dict[str, str]) -> None:
    with pytest.raises(QueryError) as refused:
        FleetQuery.from_params(params)
    assert str(refused.value).startswith(next(iter(params)))


def test_a_batch_round_trips_and_malformed_entries_are_dropped_alone() -> None:
    good = worker_left("gone", 5.0)
    changes, dropped = decode_batch(encode_batch([good]))
    assert (changes, dropped) == ([good], 0)
    mixed = (
        b'{"changes": [{"kind": "worker_left", "at": 1, "worker_id": "x"}, {"kind": "nope", "at": 1},'
        b' {"kind": "worker_left", "at": true, "worker_id": "y"}, {"kind": "introduced", "at": 1},'
        b' {"kind": "punch_result", "at": 1, "session_id": "s", "worker_id": "z", "peer_id": "y",'
        b' "status": 1, "path": "direct"}, 7]}'
    )
    changes, dropped = decode_batch(mixed)
    assert [c.worker_id for c in changes] == ["x"] and dropped == 5
    for garbage in (b"", b"[]", b'{"changes": 1}', b"\xff"):
        assert decode_batch(garbage) == ([], 1)


def introduced(session_id: str, a: str, b: str, at: float = 1.0) -> FleetChange:
    return FleetChange(
        ChangeKind.INTRODUCED, at, {"session_id": session_id, "worker_id": a, "peer_id": b}
    )


def result(
    session_id: str, side: str, peer: str, status: str, path: str, rtt: float | None = None
) -> FleetChange:
    fields = {
        "session_id": session_id,
        "worker_id": side,
        "peer_id": peer,
        "status": status,
        "path": path,
        "attempts": 1,
    }
    if rtt is not None:
        fields["rtt_ms"] = rtt
    return FleetChange(ChangeKind.PUNCH_RESULT, 2.0, fields)


def test_a_session_is_drawn_by_what_its_sides_report() -> None:
    book = PathBook()
    book.apply(introduced("s1", "a", "b"))
    assert book.picture()["counts"]["punching"] == 1
    book.apply(result("s1", "a", "b", "failed", "none"))
    assert book.picture()["sessions"][0]["state"] == "failed"
    book.apply(result("s1", "b", "a", "relayed", "relay", rtt=9.0))
    assert book.picture()["sessions"][0]["state"] == "relayed"
    book.apply(result("s1", "a", "b", "connected", "direct", rtt=1.25))  # an upgrade
    [session] = book.picture()["sessions"]
    assert (session["state"], session["rtt_ms"]) == ("direct", 1.2)
    # A result from a stranger to the session, or for no session, moves nothing.
    book.apply(result("s1", "mallory", "a", "failed", "none"))
    book.apply(result("s9", "a", "b", "failed", "none"))
    assert book.picture()["sessions"][0]["state"] == "direct"
    assert book.of_worker("a")["relay_share"] == 0.0


def test_sessions_end_when_a_member_leaves_or_the_pair_is_introduced_again() -> None:
    book = PathBook()
    book.apply(introduced("s1", "a", "b", at=1.0))
    book.apply(introduced("s2", "b", "a", at=2.0))
    assert [s["session_id"] for s in book.picture()["sessions"]] == ["s2"]
    book.apply(introduced("s3", "a", "c", at=3.0))
    book.apply(worker_left("a", 4.0))
    assert book.picture()["active"] == 0
    ended = [s["session_id"] for s in book.of_worker("a")["ended_sessions"]]
    assert ended == ["s3", "s2", "s1"]


def test_the_picture_holds_a_bounded_number_of_sessions() -> None:
    book = PathBook(max_active=2)
    for n in range(3):
        book.apply(introduced(f"s{n}", f"a{n}", f"b{n}"))
    assert [s["session_id"] for s in book.picture()["sessions"]] == ["s1", "s2"]


def basic(password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}


def test_a_browser_login_reads_but_changes_only_with_the_page_header() -> None:
    assert browser_login(basic(TOKEN), TOKEN, "GET")
    assert not browser_login(basic(TOKEN), TOKEN, "DELETE")
    assert browser_login({**basic(TOKEN), "x-holepunch-ui": "1"}, TOKEN, "POST")
    assert not browser_login(basic("wrong-" + TOKEN), TOKEN, "GET")
    assert not browser_login(basic(TOKEN), None, "GET")  # no ADMIN_TOKEN: closed
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x", ""):
        assert not browser_login({"authorization": header}, TOKEN, "GET"), header


async def test_a_stalled_viewer_is_told_to_resync_instead_of_buffering() -> None:
    viewer = Viewer(capacity=2)
    for n in range(3):
        viewer.push(f"event {n}\n".encode())
    assert await viewer.next_frames(1.0) == b"event: resync\ndata: {}\n\n"
    viewer.push(b"next\n")
    assert await viewer.next_frames(1.0) == b"next\n"
    waiting = asyncio.ensure_future(viewer.next_frames(60.0))
    await asyncio.sleep(0)
    viewer.close()
    assert await waiting == b""  # closed: the stream ends
    assert await Viewer().next_frames(0.01) == b""  # quiet: a keep-alive is due


def test_the_table_cache_serves_a_query_only_for_the_version_it_was_made_for() -> None:
    cache = FleetCache(size=2)
    first, second, third = FleetQuery(), FleetQuery(tag="gpu"), FleetQuery(offset=100)
    cache.put(first, 1, b"one")
    assert cache.get(first, 1) == b"one"
    assert cache.get(first, 2) is None  # the fleet changed since
    cache.put(second, 1, b"two")
    cache.get(first, 1)  # used: kept
    cache.put(third, 1, b"three")
    assert cache.get(second, 1) is None and cache.get(first, 1) == b"one"


async def test_drain_sends_what_is_pending_and_then_takes_nothing() -> None:
    """Before the store closes: a batch sent after it would reopen a Redis connection."""
    sent: list[bytes] = []

    async def share(payload: bytes) -> bool:
        sent.append(payload)
        return True

    feed = LiveFeed(enabled=True, batch_sec=3600.0)  # only drain() sends
    feed.share_through(share)
    feed.note([worker_left("a", 1.0)])
    await feed.drain()
    assert [decode_batch(payload)[0][0].worker_id for payload in sent] == ["a"]
    feed.note([worker_left("b", 2.0)])
    await feed.drain()
    assert len(sent) == 1


async def test_changes_noted_within_a_batch_interval_are_shared_as_one_batch() -> None:
    sent: list[bytes] = []

    async def share(payload: bytes) -> bool:
        sent.append(payload)
        return True

    feed = LiveFeed(enabled=True, batch_sec=0.2)
    feed.share_through(share)
    for n in range(3):
        feed.note([worker_left(f"w{n}", float(n))])
        await asyncio.sleep(0.005)  # separate messages, well within the interval
    await eventually(lambda: bool(sent), what="the batch")
    assert [[c.worker_id for c in decode_batch(p)[0]] for p in sent] == [["w0", "w1", "w2"]]
    feed.note([worker_left("w3", 3.0)])
    await feed.drain()
    assert len(sent) == 2


def test_a_disabled_feed_takes_nothing() -> None:
    sent: list[bytes] = []

    async def share(payload: bytes) -> bool:
        sent.append(payload)
        return True

    feed = LiveFeed(enabled=False)
    feed.share_through(share)
    feed.note([worker_left("a", 1.0)])  # outside any event loop: not even scheduled
    asyncio.run(feed.drain())
    assert sent == [] and not feed.recent
