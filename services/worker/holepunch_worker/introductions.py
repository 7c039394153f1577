"""Introductions this worker asked for and is waiting on, and how each one ends.

A `connect_request` carries a `request_id`; the rendezvous answers with an `error` that
echoes it, or with a `peer_introduction` (the asker's copy echoes it too). A rendezvous
older than `request_id` echoes nothing: an introduction is then matched by its peer (as
is one the peer asked for at the same time), and a refusal matches no request, which
ends at its timeout. No I/O: the worker feeds in what arrives.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from holepunch_protocol import ErrorCode, ErrorMessage, PeerIntroduction

from holepunch_worker.dataplane.interface import ConnectRefused, DataPlaneError, PeerUnavailable

__all__ = ["PROBE_BUDGET", "PendingIntroductions", "http_status_for"]

# This worker's own refusal: its probe budget (probe_budget.py) would not start the session.
PROBE_BUDGET = "probe_budget"

_REFUSAL_STATUS = {
    ErrorCode.PEER_NOT_FOUND.value: HTTPStatus.NOT_FOUND,
    ErrorCode.NOT_ALLOWED.value: HTTPStatus.FORBIDDEN,
    ErrorCode.SELF_INTRODUCTION.value: HTTPStatus.BAD_REQUEST,
    "invalid_peer_id": HTTPStatus.BAD_REQUEST,
    ErrorCode.NO_ENDPOINT.value: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.PEER_HAS_NO_ENDPOINT.value: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.TOO_MANY_SESSIONS.value: HTTPStatus.TOO_MANY_REQUESTS,
    ErrorCode.INTRODUCTION_RATE_LIMITED.value: HTTPStatus.TOO_MANY_REQUESTS,
    PROBE_BUDGET: HTTPStatus.TOO_MANY_REQUESTS,
}
_UNAVAILABLE_STATUS = {
    "rendezvous_unavailable": HTTPStatus.SERVICE_UNAVAILABLE,
    "timeout": HTTPStatus.GATEWAY_TIMEOUT,
}


def http_status_for(error: DataPlaneError) -> HTTPStatus:
    """What the worker's HTTP API answers for an introduction that did not happen: 502
    for a refusal whose code this worker does not know (a newer rendezvous's)."""
    table = _UNAVAILABLE_STATUS if isinstance(error, PeerUnavailable) else _REFUSAL_STATUS
    return table.get(error.reason, HTTPStatus.BAD_GATEWAY)


class PendingIntroductions:
    def __init__(self) -> None:
        self._waiting: dict[int, tuple[str, asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, request_id: int, peer_id: str) -> asyncio.Future[None]:
        """A future that ends as the request does (`forget` it when done waiting)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (peer_id, waiter)
        return waiter

    def forget(self, request_id: int) -> None:
        self._waiting.pop(request_id, None)

    def introduced(self, message: PeerIntroduction, started: bool) -> None:
        """An introduction arrived: it answers the request whose id it carries and every
        request for the same peer. `started`: the punch session began (False when this
        worker's probe budget refused it)."""
        for request_id, (peer_id, waiter) in self._waiting.items():
            if waiter.done() or (request_id != message.request_id and peer_id != message.peer_id):
                continue
            if started:
                waiter.set_result(None)
            else:
                waiter.set_exception(
                    ConnectRefused(
                        PROBE_BUDGET,
                        "this worker started probing too many new addresses in the last "
                        "minute to start one more introduction",
                    )
                )

    def refused(self, message: ErrorMessage) -> bool:
        """An error arrived: True if it refused one of these requests (now ended)."""
        entry = None if message.request_id is None else self._waiting.get(message.request_id)
        if entry is None or entry[1].done():
            return False
        entry[1].set_exception(ConnectRefused(message.code, message.detail))
        return True

    def abandon(self) -> None:
        """The rendezvous connection ended: no answer will come to these requests."""
        for _, waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(
                    PeerUnavailable(
                        "rendezvous_unavailable",
                        "the connection to the rendezvous ended before it answered",
                    )
                )
