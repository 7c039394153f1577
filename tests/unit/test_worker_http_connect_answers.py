"""How an introduction the worker asked for ends (introductions.py), and what its HTTP API
answers for each ending; no sockets."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import pytest
from holepunch_protocol import ErrorMessage, PeerIntroduction, PeerRole
from holepunch_worker.dataplane.interface import ConnectRefused, PeerUnavailable
from holepunch_worker.introductions import PendingIntroductions, http_status_for


def introduction(peer_id: str, request_id: int | None = None) -> PeerIntroduction:
    return PeerIntroduction(
        session_id="ab" * 8,
        peer_id=peer_id,
        peer_udp_ip="203.0.113.7",
        peer_udp_port=4000,
        peer_mapping=None,
        secret="cd" * 32,
        role=PeerRole.INITIATOR,
        request_id=request_id,
    )


async def test_an_introduction_answers_its_request_and_every_one_for_its_peer() -> None:
    pending = PendingIntroductions()
    first, second = pending.add(1, "b"), pending.add(2, "b")
    other = pending.add(3, "c")
    pending.introduced(introduction("b", request_id=1), started=True)
    assert first.result() is None and second.result() is None  # the peer's, too
    assert not other.done()
    # An old rendezvous echoes no request_id: the peer alone matches.
    pending.introduced(introduction("c"), started=True)
    assert other.result() is None


async def test_an_introduction_the_probe_budget_refused_is_a_refusal() -> None:
    pending = PendingIntroductions()
    waiter = pending.add(1, "b")
    pending.introduced(introduction("b", request_id=1), started=False)
    with pytest.raises(ConnectRefused) as refused:
        waiter.result()
    assert refused.value.reason == "probe_budget"


async def test_an_error_ends_only_the_request_it_names() -> None:
    pending = PendingIntroductions()
    waiter, other = pending.add(7, "b"), pending.add(8, "b")
    assert not pending.refused(ErrorMessage("peer_not_found", "gone"))  # no request_id
    assert not pending.refused(ErrorMessage("peer_not_found", "gone", request_id=99))
    assert not waiter.done()
    assert pending.refused(ErrorMessage("not_allowed", "policy", request_id=7))
    with pytest.raises(ConnectRefused) as refused:
        waiter.result()
    assert (refused.value.reason, refused.value.detail) == ("not_allowed", "policy")
    assert not other.done()
    assert not pending.refused(ErrorMessage("not_allowed", "again", request_id=7))  # ended
    pending.forget(7)
    assert len(pending) == 1


async def test_a_closed_connection_ends_every_request_still_waiting() -> None:
    pending = PendingIntroductions()
    waiter = pending.add(1, "b")
    done = pending.add(2, "c")
    pending.introduced(introduction("c", request_id=2), started=True)
    pending.abandon()
    with pytest.raises(PeerUnavailable) as unavailable:
        await asyncio.wait_for(waiter, 1)
    assert unavailable.value.reason == "rendezvous_unavailable"
    assert done.result() is None


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ConnectRefused("peer_not_found", ""), HTTPStatus.NOT_FOUND),
        (ConnectRefused("not_allowed", ""), HTTPStatus.FORBIDDEN),
        (ConnectRefused("self_introduction", ""), HTTPStatus.BAD_REQUEST),
        (ConnectRefused("peer_has_no_endpoint", ""), HTTPStatus.SERVICE_UNAVAILABLE),
        (ConnectRefused("introduction_rate_limited", ""), HTTPStatus.TOO_MANY_REQUESTS),
        (ConnectRefused("probe_budget", ""), HTTPStatus.TOO_MANY_REQUESTS),
        (ConnectRefused("a_code_from_a_newer_rendezvous", ""), HTTPStatus.BAD_GATEWAY),
        (PeerUnavailable("rendezvous_unavailable", ""), HTTPStatus.SERVICE_UNAVAILABLE),
        (PeerUnavailable("timeout", ""), HTTPStatus.GATEWAY_TIMEOUT),
    ],
)
def test_http_status_for_each_ending(
    error: ConnectRefused | PeerUnavailable, status: HTTPStatus
) -> None:
    assert http_status_for(error) == status
