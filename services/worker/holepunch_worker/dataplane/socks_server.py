"""The SOCKS5 proxy's I/O (SOCKS_LISTEN): a loopback TCP listener whose clients become
streams to peers.

The handshake's decisions are socks5.py's; this module reads the client's bytes into
it, asks the data plane for the stream (which introduces and punches on demand), answers
the client and splices the two. A client that is malformed, too slow (the handshake has
a deadline) or refused gets its answer and is closed, alone: each client is its own task.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from holepunch_logging import WorkerEvent, log_event

from holepunch_worker.config import join_host_port
from holepunch_worker.dataplane.interface import (
    DEFAULT_CONNECT_TIMEOUT_SEC,
    DataPlane,
    DataPlaneError,
)
from holepunch_worker.dataplane.socks5 import (
    HandshakeStep,
    PeerTarget,
    Reply,
    Socks5Handshake,
    encode_reply,
    reply_for_error,
    resolve_target,
)
from holepunch_worker.dataplane.splice import splice
from holepunch_worker.dataplane.tcp_listener import TcpListener

__all__ = ["HANDSHAKE_TIMEOUT_SEC", "MAX_CLIENTS", "SocksServer"]

# From accept to a complete request: a real client sends both messages at once.
HANDSHAKE_TIMEOUT_SEC = 10.0
# Clients served at once (handshaking or relaying); more are closed on arrival.
MAX_CLIENTS = 1024
# A greeting is at most 257 bytes and a request 262: a read never needs more.
HANDSHAKE_READ_BYTES = 512


class SocksServer:
    def __init__(
        self,
        data_plane: DataPlane,
        worker_id: str,
        logger: logging.Logger,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_SEC,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._data_plane = data_plane
        self._worker_id = worker_id
        self._logger = logger
        self._handshake_timeout = handshake_timeout
        self._connect_timeout = connect_timeout
        self._listener = TcpListener(
            self._serve_client, max_clients=max_clients, on_full=self._full
        )

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on `host:port`; the address bound (port 0 picks one)."""
        bound = await self._listener.start(host, port)
        self._log(
            WorkerEvent.PROXY_LISTENING,
            f"SOCKS5 proxy listening on {join_host_port(*bound)}",
            kind="socks",
            listen=join_host_port(*bound),
        )
        return bound

    async def close(self) -> None:
        await self._listener.close()

    def _full(self, clients: int) -> None:
        self._refused("too_many_clients", f"already {clients} clients")

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        handshake = Socks5Handshake()
        step = HandshakeStep()
        try:
            async with asyncio.timeout(self._handshake_timeout):
                while not handshake.done:
                    data = await reader.read(HANDSHAKE_READ_BYTES)
                    if not data:
                        return  # closed before asking anything
                    step = handshake.receive_data(data)
                    writer.write(step.to_send)
                    await writer.drain()
        except TimeoutError:
            self._refused("handshake_timeout", f"no request within {self._handshake_timeout:g} s")
            return
        if step.close or step.request is None:
            self._refused(step.reason or "malformed", "malformed SOCKS5 handshake")
            return
        target = resolve_target(step.request, self._worker_id)
        if not isinstance(target, PeerTarget):
            await self._answer(writer, target.reply)
            self._refused(target.reason, target.detail, reply=target.reply)
            return
        try:
            stream = await self._data_plane.open_stream(
                target.peer_id, target.port, timeout=self._connect_timeout
            )
        except DataPlaneError as error:
            reply = reply_for_error(error)
            await self._answer(writer, reply)
            self._refused(
                error.reason, error.detail, reply=reply, peer_id=target.peer_id, port=target.port
            )
            return
        await self._answer(writer, Reply.SUCCEEDED)
        await splice((reader, writer), stream, early_data=step.early_data)

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, reply: Reply) -> None:
        writer.write(encode_reply(reply))
        await writer.drain()

    def _refused(
        self, reason: str, detail: str, *, reply: Reply | None = None, **fields: Any
    ) -> None:
        self._log(
            WorkerEvent.PROXY_REFUSED,
            f"SOCKS5 client refused ({reason}): {detail}",
            level=logging.WARNING,
            kind="socks",
            reason=reason,
            reply=None if reply is None else int(reply),
            **fields,
        )

    def _log(
        self, event: WorkerEvent, message: str, *, level: int = logging.INFO, **fields: Any
    ) -> None:
        log_event(self._logger, event, message, level=level, worker_id=self._worker_id, **fields)
