"""Module for the `dramatiq` command line: `dramatiq tasks.worker` (what `bookings worker` runs).

Dramatiq imports this module in every worker process and takes the broker that is set when
the import finishes, so this is the one place where a broker is built at import time.
"""

from __future__ import annotations

import logging
import time

import dramatiq
from dramatiq.middleware.prometheus import Prometheus

from config.logging import configure_logging
from config.settings import Settings
from tasks.runtime import build_worker


class CalmReconnects(logging.Filter):
    """While the broker is away, Dramatiq's consumers log a CRITICAL line and a restart line
    every few seconds, per queue, naming no setting. Let one warning a minute through, saying
    which setting points at the broker; the consumers keep retrying all along."""

    EVERY_SECONDS = 60.0

    def __init__(self) -> None:
        super().__init__()
        self._said_at = -self.EVERY_SECONDS

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("dramatiq.worker.ConsumerThread"):
            return True
        if record.levelno < logging.CRITICAL:
            return record.levelno >= logging.WARNING  # "Restarting consumer in 3 s": the retry itself
        now = time.monotonic()
        if now - self._said_at < self.EVERY_SECONDS:
            return False
        self._said_at = now
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "the broker (REDIS_URL) is unreachable; retrying every few seconds: %s", (
            record.getMessage(),
        )
        return True


configure_logging("worker")
for handler in logging.getLogger().handlers:
    handler.addFilter(CalmReconnects())
settings = Settings.from_env()
runtime = build_worker(settings)
if settings.worker_metrics_bind is not None:
    # Per-actor message counts, failures, retries, in-flight and durations, served by the dramatiq
    # CLI's exposition server at WORKER_METRICS_BIND (tasks.supervisor hands it the address).
    # Off unless asked for: two local stacks would fight over one fixed port.
    runtime.broker.add_middleware(Prometheus())
dramatiq.set_broker(runtime.broker)
broker = runtime.broker
