"""TCP_FORWARDS: a loopback listener per entry, each connection a stream to one peer's port.

For programs that cannot use a proxy: `127.0.0.1:9000=worker-b:8000` makes every
connection to 127.0.0.1:9000 a stream to port 8000 on worker-b's loopback (introduced
and punched on demand). When the stream cannot be had, the local connection is reset
and the refusal logged with the data plane's reason.
"""

from __future__ import annotations

import asyncio
import logging

from holepunch_logging import WorkerEvent, log_event

from holepunch_worker.config import ForwardSpec, join_host_port
from holepunch_worker.dataplane.interface import (
    DEFAULT_CONNECT_TIMEOUT_SEC,
    DataPlane,
    DataPlaneError,
)
from holepunch_worker.dataplane.splice import reset, splice
from holepunch_worker.dataplane.tcp_listener import TcpListener

__all__ = ["MAX_FORWARD_CLIENTS", "TcpForward"]

# Connections one forward relays at once; more are reset on arrival.
MAX_FORWARD_CLIENTS = 1024


class TcpForward:
    def __init__(
        self,
        data_plane: DataPlane,
        spec: ForwardSpec,
        worker_id: str,
        logger: logging.Logger,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC,
        max_clients: int = MAX_FORWARD_CLIENTS,
    ) -> None:
        self._data_plane = data_plane
        self.spec = spec
        self._worker_id = worker_id
        self._logger = logger
        self._connect_timeout = connect_timeout
        self._listener = TcpListener(self._relay, max_clients=max_clients, on_full=self._full)

    async def start(self, port: int | None = None) -> tuple[str, int]:
        """Listen on the spec's address (or on `port` instead: 0 picks one, for tests)."""
        bound = await self._listener.start(
            self.spec.listen_host, self.spec.listen_port if port is None else port
        )
        log_event(
            self._logger,
            WorkerEvent.PROXY_LISTENING,
            f"TCP forward listening on {join_host_port(*bound)} to "
            f"{self.spec.peer_id}:{self.spec.peer_port}",
            worker_id=self._worker_id,
            kind="tcp_forward",
            listen=join_host_port(*bound),
            peer_id=self.spec.peer_id,
            port=self.spec.peer_port,
        )
        return bound

    async def close(self) -> None:
        await self._listener.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        spec = self.spec
        try:
            stream = await self._data_plane.open_stream(
                spec.peer_id, spec.peer_port, timeout=self._connect_timeout
            )
        except DataPlaneError as error:
            reset(writer)
            self._refused(error.reason, error.detail)
            return
        await splice((reader, writer), stream)

    def _full(self, clients: int) -> None:
        self._refused("too_many_clients", f"already {clients} connections")

    def _refused(self, reason: str, detail: str) -> None:
        log_event(
            self._logger,
            WorkerEvent.PROXY_REFUSED,
            f"TCP forward {self.spec} refused a connection ({reason}): {detail}",
            level=logging.WARNING,
            worker_id=self._worker_id,
            kind="tcp_forward",
            reason=reason,
            peer_id=self.spec.peer_id,
            port=self.spec.peer_port,
        )
