"""Logging: JSON lines carrying the context of the request or task that wrote them.

`bound(request_id=..., booking_id=...)` puts fields in a context variable for the duration of
a block; every log record written inside it carries them. The API binds the request id; the
worker binds the id the message carries, so one request's id is on every line it caused.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "log_context", default=MappingProxyType({})
)

#: Fields a log line may carry; anything else passed via `bound` is dropped, so a careless
#: caller cannot put a secret into the logs by name.
FIELDS = ("request_id", "client_id", "booking_id", "event_id", "actor", "queue", "message_id", "outcome")


Token = contextvars.Token[Mapping[str, Any]]


def push(**fields: Any) -> Token:
    """Add fields to the log context until `pop` (for hooks that open and close in two calls)."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if k in FIELDS and v is not None}})


def pop(token: Token) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = push(**fields)
    try:
        yield
    finally:
        pop(token)


def current(name: str) -> Any:
    return _context.get().get(name)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class ReadableFormatter(logging.Formatter):
    """`12:00:01 worker   INFO  message  booking_id=…` for a person at a terminal (LOG_FORMAT=text):
    the level coloured when stderr is a terminal and NO_COLOR is unset, the context fields last."""

    COLOURS = {logging.DEBUG: "2", logging.INFO: "32", logging.WARNING: "33", logging.ERROR: "31", logging.CRITICAL: "1;31"}

    def __init__(self, service: str, *, colour: bool) -> None:
        super().__init__(datefmt="%H:%M:%S")
        self.service, self.colour = service, colour

    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname:<5}"
        if self.colour:
            level = f"\033[{self.COLOURS.get(record.levelno, '0')}m{level}\033[0m"
        fields = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None))
        line = f"{self.formatTime(record, self.datefmt)} {self.service:<9} {level} {record.getMessage()}"
        if fields:
            line += f"  {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(service: str, *, level: str | None = None, json_lines: bool | None = None) -> None:
    """Root logging for a process: JSON lines on stderr unless LOG_FORMAT=text (`bookings dev`)."""
    level = level or os.environ.get("LOG_LEVEL", "INFO")
    json_lines = os.environ.get("LOG_FORMAT", "json") != "text" if json_lines is None else json_lines
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        ))
    else:
        colour = sys.stderr.isatty() and "NO_COLOR" not in os.environ
        handler.setFormatter(ReadableFormatter(service, colour=colour))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter that would otherwise log every Stripe and HTTP call at INFO.
    for noisy in ("stripe", "httpx", "urllib3", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
