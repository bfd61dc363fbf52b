"""The workers' webhook delivery metrics, served with Dramatiq's at WORKER_METRICS_BIND:
`webhook_delivery_latency_seconds{type}`, from an event's creation to its successful delivery,
and `webhook_delivery_attempts_total{type,outcome}` (`succeeded`, `retried`, `failed`).

prometheus_client is imported at the first delivery, not when this module is: Dramatiq's
Prometheus middleware points it at its multiprocess directory when a worker process boots, and a
client imported before then (in the supervisor, before the fork) would keep every value in one
process's memory, where the exposition server never looks.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from domain.notifications import DeliveryStatus

#: From "at once" (the scheduler's tick is 2 s) to the three days a delivery is tried for.
LATENCY_BUCKETS = (1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 3 * 24 * 3600)

_OUTCOMES = {DeliveryStatus.SUCCEEDED: "succeeded", DeliveryStatus.PENDING: "retried", DeliveryStatus.FAILED: "failed"}


class DeliveryMetrics:
    """Counts each delivery attempt and times each success (one per worker process)."""

    def __init__(self, registry: Any = None) -> None:
        self.registry = registry  # None: prometheus_client's default, which the exposition server reads
        self._lock = threading.Lock()
        self._metrics: tuple[Any, Any] | None = None

    def __call__(self, event_type: str, status: DeliveryStatus, since_event: timedelta) -> None:
        latency, attempts = self._made()
        attempts.labels(event_type, _OUTCOMES[status]).inc()
        if status is DeliveryStatus.SUCCEEDED:
            latency.labels(event_type).observe(max(since_event.total_seconds(), 0.0))

    def _made(self) -> tuple[Any, Any]:
        with self._lock:
            if self._metrics is None:
                from prometheus_client import REGISTRY, Counter, Histogram

                registry = self.registry or REGISTRY
                self._metrics = (
                    Histogram("webhook_delivery_latency_seconds",
                              "Time from a webhook event's creation to its successful delivery", ["type"],
                              buckets=LATENCY_BUCKETS, registry=registry),
                    Counter("webhook_delivery_attempts", "Webhook delivery attempts by event type and outcome",
                            ["type", "outcome"], registry=registry),
                )
            return self._metrics


#: The process's metrics: prometheus_client refuses a second registration of one name.
delivery_metrics = DeliveryMetrics()
