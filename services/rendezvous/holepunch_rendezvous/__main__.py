"""`holepunch-rendezvous`: start the rendezvous service."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import sys

from holepunch_logging import RendezvousEvent, configure_logging, log_event

from holepunch_rendezvous.config import ConfigError, RendezvousConfig
from holepunch_rendezvous.server import build_server

__all__ = ["main"]


# A configuration the process cannot run with: a bad variable, or a port it cannot bind.
EXIT_CONFIG_INVALID = 2


def _config_invalid(error: ConfigError) -> int:
    log_event(
        logging.getLogger("holepunch.rendezvous"),
        RendezvousEvent.CONFIG_INVALID,
        f"Invalid configuration: {error}",
        level=logging.ERROR,
        variable=error.variable,
        reason=error.detail,
    )
    return EXIT_CONFIG_INVALID


def listen(config: RendezvousConfig) -> socket.socket:
    """The listening socket, bound here rather than by uvicorn, whose failure is an
    unstructured line and exit status 3: a taken port is a configuration error."""
    family = socket.AF_INET6 if ipaddress.ip_address(config.host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ConfigError(
                "PORT", f"port {config.port} on {config.host} is already in use"
            ) from None
        raise ConfigError(
            "HOST", f"cannot listen on {config.host}:{config.port}: {error.strerror}"
        ) from None
    return sock


def main() -> int:
    try:
        config = RendezvousConfig.from_env(os.environ)
    except ConfigError as error:
        configure_logging("rendezvous")
        return _config_invalid(error)
    configure_logging("rendezvous", config.log_level)
    try:
        sock = listen(config)
    except ConfigError as error:
        return _config_invalid(error)
    build_server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
