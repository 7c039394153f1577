"""A WebSocket client that registers the way a worker with a key does: it names its key
in the upgrade, reads the challenge, and answers it (or, for attack tests, answers with
whatever proof the test gives it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from holepunch_protocol import (
    AuthChallenge,
    AuthProof,
    decode_server_message,
    encode_message,
)
from holepunch_worker.identity import WorkerKey
from websockets.asyncio.client import ClientConnection, connect

__all__ = ["connect_with_key"]

Prover = Callable[[AuthChallenge], AuthProof]


async def connect_with_key(
    url: str,
    worker_id: str,
    key: WorkerKey,
    headers: Mapping[str, str] | None = None,
    *,
    prover: Prover | None = None,
    announced_key: str | None = None,
) -> tuple[ClientConnection, AuthChallenge]:
    """A connection that answered its challenge (with `prover`'s proof if given, else a
    true one); the caller closes it. `announced_key`: the key named in the upgrade, if not
    `key`'s own."""
    upgrade = {**(headers or {}), **key.upgrade_headers()}
    if announced_key is not None:
        upgrade[next(iter(key.upgrade_headers()))] = announced_key
    websocket = await connect(url, additional_headers=upgrade)
    challenge = decode_server_message(await asyncio.wait_for(websocket.recv(), 5))
    assert isinstance(challenge, AuthChallenge), challenge
    proof = prover(challenge) if prover is not None else key.prove(challenge, worker_id)
    await websocket.send(encode_message(proof))
    return websocket, challenge
