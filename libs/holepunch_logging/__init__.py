"""Structured logging for Cloud Logging: one JSON object per event on stdout.

Cloud Run forwards stdout to Cloud Logging, which parses each JSON line into
`jsonPayload` and maps `severity` and `message`. google-cloud-logging's
StructuredLogHandler writes exactly that shape; `log_event` adds an `event` name and
the event's fields at the top level, so a query can say `jsonPayload.event="..."`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from google.cloud.logging.handlers import StructuredLogHandler

__all__ = ["configure_logging", "get_event_logger", "log_event"]

_HANDLER_NAME = "holepunch-structured"


def configure_logging(
    service: str, level: str | int = "INFO", stream: TextIO | None = None
) -> None:
    """Route every log record to stdout as one JSON line (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = StructuredLogHandler(  # type: ignore[no-untyped-call]
        labels={"service": service}, stream=stream if stream is not None else sys.stdout
    )
    handler.set_name(_HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # uvicorn's own access lines would be one unstructured line per request: our events
    # already say what matters, so keep only its warnings.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def get_event_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def log_event(
    logger: logging.Logger,
    event: str,
    message: str,
    *,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log one event: `message` for humans, `event` and `fields` for queries."""
    if not logger.isEnabledFor(level):
        return
    payload = {"event": event}
    payload.update({key: value for key, value in fields.items() if value is not None})
    logger.log(level, message, extra={"json_fields": payload})
