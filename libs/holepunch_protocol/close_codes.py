"""WebSocket close codes the rendezvous sends, and what a worker should make of them."""

from __future__ import annotations

import enum

__all__ = ["CloseCode"]


class CloseCode(enum.IntEnum):
    GOING_AWAY = 1001  # the rendezvous is shutting down: reconnect
    POLICY_VIOLATION = 1008  # invalid worker_id: reconnecting will not help
    MESSAGE_TOO_BIG = 1009
    # RFC 6455 leaves 4000-4999 to applications.
    UNAUTHENTICATED = 4401  # no or wrong credentials
    FORBIDDEN = 4403  # this worker_id belongs to another identity
    REPLACED = 4409  # a newer connection took this worker_id
    TOO_MANY_CONNECTIONS = 4429  # per client address
    TAG_NOT_ALLOWED = 4422  # the worker declared a tag the operator does not allow
