"""`holepunch-worker` / `python -m holepunch_worker`: run the worker until SIGTERM/SIGINT.

Exit codes: 0 after a clean shutdown, 2 for invalid configuration, 1 for a failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import traceback

from holepunch_logging import WorkerEvent, configure_logging, log_event

from holepunch_worker.config import ConfigError, WorkerConfig, load_config
from holepunch_worker.worker import Worker

__all__ = ["main"]

SERVICE_NAME = "holepunch-worker"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


async def _serve(config: WorkerConfig, logger: logging.Logger) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def request_stop(signum: signal.Signals) -> None:
        log_event(
            logger,
            WorkerEvent.SHUTDOWN_REQUESTED,
            f"received {signum.name}, shutting down",
            worker_id=config.worker_id,
            reason=signum.name,
        )
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)
    await Worker(config, logger).run(stop)


def main() -> int:
    logger = logging.getLogger(SERVICE_NAME)
    try:
        config = load_config(os.environ)
    except ConfigError as error:
        configure_logging(SERVICE_NAME)
        log_event(
            logger,
            WorkerEvent.CONFIG_INVALID,
            f"invalid configuration: {error}",
            level=logging.ERROR,
            variable=error.variable,
            reason=error.detail,
        )
        return EXIT_CONFIG
    configure_logging(SERVICE_NAME, config.log_level)
    log_event(
        logger,
        WorkerEvent.WORKER_STARTING,
        "worker starting",
        worker_id=config.worker_id,
        rendezvous_url=config.rendezvous_url,
        stun_servers=[str(server) for server in config.stun_servers],
        key_fingerprint=config.key.fingerprint,
    )
    try:
        asyncio.run(_serve(config, logger))
    except Exception as error:
        log_event(
            logger,
            WorkerEvent.WORKER_FAILED,
            f"worker failed: {error!r}",
            level=logging.ERROR,
            worker_id=config.worker_id,
            reason=repr(error),
            traceback=traceback.format_exc(),
        )
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
