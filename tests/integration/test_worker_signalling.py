"""The worker in-process against a real WebSocket server that withholds acks: it re-sends
its endpoint after ENDPOINT_ACK_TIMEOUT_SEC, then gives up on the silent connection and
reconnects, and reports again on the new one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from holepunch_devtools.stun_server import start_stun_server
from holepunch_protocol import (
    NONCE_BYTES,
    AckStatus,
    AuthChallenge,
    UdpEndpointAck,
    b64url_encode,
    encode_message,
)
from holepunch_worker.config import load_config
from holepunch_worker.worker import Worker
from websockets.asyncio.server import ServerConnection, serve

ACK_TIMEOUT_SEC = 0.2


class EventRecorder(logging.Handler):
    """One asyncio.Event per `log_event` name the worker logs."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[str, asyncio.Event] = {}

    def seen(self, name: str) -> asyncio.Event:
        return self._seen.setdefault(name, asyncio.Event())

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "json_fields", {})
        self.seen(fields.get("event", "")).set()


async def test_resends_without_ack_then_reconnects_and_reports_again() -> None:
    connections: list[list[dict[str, Any]]] = []
    acknowledged = asyncio.Event()
    closed_codes: list[int | None] = []

    async def handler(websocket: ServerConnection) -> None:
        frames: list[dict[str, Any]] = []
        connections.append(frames)
        first_connection = len(connections) == 1
        challenge = AuthChallenge(nonce=b64url_encode(os.urandom(NONCE_BYTES)))
        await websocket.send(encode_message(challenge))
        assert json.loads(await websocket.recv())["type"] == "auth_proof"
        async for frame in websocket:
            frames.append(json.loads(frame))
            if not first_connection:  # the first connection never acks
                await websocket.send(encode_message(UdpEndpointAck(AckStatus.SUCCESS)))
                acknowledged.set()
        closed_codes.append(websocket.close_code)

    stun_server = await start_stun_server([("127.0.0.1", 0), ("127.0.0.2", 0)])
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = load_config(
            {
                "RENDEZVOUS_SERVICE_URL": f"ws://127.0.0.1:{port}",
                "WORKER_ID": "acks-withheld",
                "PORT": "0",
                "UDP_BIND_HOST": "127.0.0.1",
                "STUN_SERVERS": ",".join(f"{h}:{p}" for h, p in stun_server.addresses),
                "STUN_REFRESH_SEC": "60",
                "ENDPOINT_ACK_TIMEOUT_SEC": str(ACK_TIMEOUT_SEC),
                "RECONNECT_INITIAL_DELAY_SEC": "0.05",
                "RECONNECT_MAX_DELAY_SEC": "0.1",
            }
        )
        logger = logging.getLogger("tests.worker.signalling")
        events = EventRecorder()
        logger.addHandler(events)
        logger.setLevel(logging.INFO)
        worker = Worker(config, logger)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            await asyncio.wait_for(acknowledged.wait(), 10)
            await asyncio.wait_for(events.seen("endpoint_ack").wait(), 5)  # worker read it
            status = worker.status()
        finally:
            stop.set()
            await asyncio.wait_for(running, 10)
    stun_server.close()
    logger.removeHandler(events)

    first, second = connections[0], connections[1]
    # Sent once, re-sent twice after the ack timeout, then the connection was dropped.
    assert [frame["type"] for frame in first] == ["update_udp_endpoint"] * 3
    assert first[0] == first[1] == first[2]
    assert closed_codes[0] == 1000
    # The new connection gets the same report at once, and its ack settles it.
    assert second[0] == first[0]
    local_port = status["udp_local"]["port"]
    assert second[0] == {
        "type": "update_udp_endpoint",
        "udp_ip": "127.0.0.1",
        "udp_port": local_port,
        "mapping": "endpoint_independent",
        "local_port": local_port,
    }
    assert status["report_state"] == "acknowledged"
    assert status["last_ack_status"] == "success"
    assert status["rendezvous_state"] == "connected"
