"""Module for the `dramatiq` command line: `dramatiq tasks.worker` (what `bookings worker` runs).

Dramatiq imports this module in every worker process and takes the broker that is set when
the import finishes, so this is the one place where a broker is built at import time.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware.prometheus import Prometheus

from config.logging import configure_logging
from config.settings import Settings
from tasks.runtime import build_worker

configure_logging("worker")
runtime = build_worker(Settings.from_env())
# Per-actor message counts, failures, retries, in-flight and durations, served by the dramatiq
# CLI's exposition server (dramatiq_prom_host / dramatiq_prom_port, default 0.0.0.0:9191).
runtime.broker.add_middleware(Prometheus())
dramatiq.set_broker(runtime.broker)
broker = runtime.broker
