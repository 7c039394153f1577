"""`holepunch-rendezvous`: start the rendezvous service."""

from __future__ import annotations

import logging
import os
import sys

from holepunch_logging import RendezvousEvent, configure_logging, log_event

from holepunch_rendezvous.config import ConfigError, RendezvousConfig
from holepunch_rendezvous.server import build_server

__all__ = ["main"]


def main() -> int:
    try:
        config = RendezvousConfig.from_env(os.environ)
    except ConfigError as error:
        configure_logging("rendezvous")
        log_event(
            logging.getLogger("holepunch.rendezvous"),
            RendezvousEvent.CONFIG_INVALID,
            f"Invalid configuration: {error}",
            level=logging.ERROR,
            variable=error.variable,
            reason=error.detail,
        )
        return 2
    configure_logging("rendezvous", config.log_level)
    build_server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
