"""Running the rendezvous under uvicorn, with a shutdown that fits Cloud Run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from types import FrameType

import uvicorn
from holepunch_logging import RendezvousEvent, log_event

from holepunch_rendezvous.app import CLOSE_GOING_AWAY, Rendezvous, build_asgi_app
from holepunch_rendezvous.auth import AuthMode
from holepunch_rendezvous.config import RendezvousConfig

__all__ = ["RendezvousServer", "build_server"]

logger = logging.getLogger("holepunch.rendezvous")

# Frames above this are refused by the WebSocket layer itself (close 1009); frames
# between the protocol's MAX_FRAME_BYTES and this get an error reply instead.
WS_MAX_FRAME_BYTES = 64 * 1024
REGISTRY_STOP_TIMEOUT_SEC = 1.5

# uvicorn and websockets log two INFO lines for every WebSocket accepted ("[accepted]",
# "connection open"); `worker_connected` already says it, with the worker id. Keeping
# their logger at WARNING skips those records before they are even built (a filter would
# run after); uvicorn's errors and warnings still come through, and `server_started` /
# `server_stopping` stand for its startup and shutdown lines.
_UVICORN_LOGGER = "uvicorn.error"

# Collector thresholds for a process holding thousands of connections (default 700, 10,
# 10). Each connection's transient objects (request, handshake, coroutine frames) stay
# alive across a few awaits: with a 700-allocation young generation they get promoted
# and trigger full passes over every live connection, so the cost per registration grew
# with N. Measured in docs/benchmark.md: ~20% less CPU per registration at 5,000.
GC_THRESHOLDS = (20_000, 20, 100)


def _tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    # Everything imported so far (google-cloud-logging brings grpc and protobuf) lives as
    # long as the process: keep it out of the collector's full passes.
    gc.freeze()


class RendezvousServer(uvicorn.Server):
    """uvicorn closes WebSockets with 1012 on shutdown; workers should see 1001 (going away)."""

    def __init__(self, config: uvicorn.Config, rendezvous: Rendezvous) -> None:
        super().__init__(config)
        self.rendezvous = rendezvous
        self.ready = asyncio.Event()
        self._owns_process = False

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve as the process's main loop (the container): process-wide tuning applies."""
        self._owns_process = True
        super().run(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after shutting down, so the process would die of
        # SIGTERM; a graceful shutdown should end with exit status 0 instead.
        self._captured_signals.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.rendezvous.start()  # the shared registry, if configured (never fails)
        await super().startup(sockets)
        if self.started and self._owns_process:
            _tune_gc()  # not when embedded with serve(), e.g. in a test's event loop
        if self.started:
            log_event(
                logger,
                RendezvousEvent.SERVER_STARTED,
                f"Rendezvous listening on {self.config.host}:{self.config.port}",
                host=self.config.host,
                port=self.config.port,
                ws_implementation=self.config.ws,
                registry=self.rendezvous.store.describe()["backend"],
                registry_ready=self.rendezvous.store.ready,
            )
            config = self.rendezvous.config
            if config.auth_mode is AuthMode.NONE:
                log_event(
                    logger,
                    RendezvousEvent.AUTH_DISABLED,
                    "AUTH_MODE=none: anyone can register any worker_id (development only)",
                    level=logging.WARNING,
                    auth_mode=config.auth_mode.value,
                )
            self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        log_event(
            logger,
            RendezvousEvent.SERVER_STOPPING,
            "Rendezvous shutting down: closing worker connections with 1001",
            workers=len(self.rendezvous.registry),
        )
        for server in self.servers:
            server.close()  # no new connections while the old ones close
        grace = self.rendezvous.config.shutdown_grace_sec
        # Whatever is still open after half the grace period, uvicorn's shutdown closes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.rendezvous.close_all(CLOSE_GOING_AWAY, "server shutting down"), grace / 2
            )
        await super().shutdown(sockets)
        # Leaving the shared registry must never hold the exit up past Cloud Run's 10 s.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.rendezvous.stop(), REGISTRY_STOP_TIMEOUT_SEC)


def build_server(
    config: RendezvousConfig, rendezvous: Rendezvous | None = None
) -> RendezvousServer:
    rendezvous = rendezvous if rendezvous is not None else Rendezvous(config)
    logging.getLogger(_UVICORN_LOGGER).setLevel(logging.WARNING)
    uvicorn_config = uvicorn.Config(
        build_asgi_app(config, rendezvous),
        host=config.host,
        port=config.port,
        ws=config.ws_implementation,
        ws_max_size=WS_MAX_FRAME_BYTES,
        # Frames are small JSON: compression costs CPU and ~64 KiB of zlib state per socket.
        ws_per_message_deflate=False,
        ws_ping_interval=config.ws_ping_interval_sec,
        ws_ping_timeout=config.ws_ping_timeout_sec,
        proxy_headers=False,  # handled by build_asgi_app, only when configured
        # uvicorn takes whole seconds; the 1001 closes above keep the exact grace.
        timeout_graceful_shutdown=int(config.shutdown_grace_sec),
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    return RendezvousServer(uvicorn_config, rendezvous)
