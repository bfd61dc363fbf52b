"""`dramatiq bench.nopay_worker`: `tasks.worker` with the instant gateway (payment-free mode)."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware.prometheus import Prometheus

from bench.instant_gateway import InstantGateway, compose_worker
from config.logging import configure_logging
from config.settings import Settings

configure_logging("worker")
runtime = compose_worker(Settings.from_env(), InstantGateway())
runtime.broker.add_middleware(Prometheus())  # as tasks.worker does, so only the gateway differs
dramatiq.set_broker(runtime.broker)
broker = runtime.broker
