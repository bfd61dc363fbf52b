"""Prometheus metrics of the API: requests by route and status, latency, Stripe events rejected
at the edge, and, read at scrape time, the state the alert rules watch (deploy/prometheus/alerts.yml):
bookings by status, queue depths and latency, outbox and webhook backlogs, recent payment
outcomes, stuck payments, the scheduler's leader, webhook deliveries and customer emails.

Under gunicorn with several workers, prometheus-client's multiprocess mode aggregates the
workers' metrics (PROMETHEUS_MULTIPROC_DIR, set up in api/gunicorn_conf.py).

`/metrics` needs an operator key, unless METRICS_BIND is set: then the web process serves
metrics without a key on that address only (a port to keep inside the network), and not on
the API's port at all.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

import falcon
import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from config.logging import bound
from config.settings import Settings
from db.queries.alerting import pipeline_gauges
from db.queries.bookings import count_by_status
from db.queries.notifications import notification_figures
from domain.lifecycle import BookingStatus
from domain.notifications import DeliveryStatus, EmailStatus
from domain.webhooks import HANDLED_TYPES
from services.context import utc_now
from tasks.queue_inspection import QueueDepth, QueueInspection, QueueInspector
from tasks.scheduler import LEADER_LOCK

log = logging.getLogger("api.access")

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

WEBHOOK_EVENTS_REJECTED = Counter(
    "stripe_webhook_events_rejected_total",
    "Signed Stripe events refused because Stripe could not have sent them", ["type"],
)


def count_rejected_event(event_type: str) -> None:
    # The type comes from the sender: anything outside the handled set is "other", so the
    # label's values stay few.
    WEBHOOK_EVENTS_REJECTED.labels(event_type if event_type in HANDLED_TYPES else "other").inc()


class Instrumentation:
    """Counts and times every request by its route template, and writes one access log line.

    `static_prefixes` are the static routes' (`count_static_routes` fills them in once every
    route is added): Falcon gives a static file no template and no resource to tell it by.
    """

    static_prefixes: tuple[str, ...] = ()

    def count_static_routes(self, app: falcon.App[Any, Any]) -> None:
        self.static_prefixes = tuple(route._prefix for route, _, _ in app._static_routes)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        elapsed = time.perf_counter() - getattr(req.context, "started", time.perf_counter())
        route = route_of(req, self.static_prefixes)
        status = resp.status_code if hasattr(resp, "status_code") else int(str(resp.status)[:3])
        REQUESTS.labels(req.method, route, str(status)).inc()
        LATENCY.labels(req.method, route).observe(elapsed)
        principal = getattr(req.context, "principal", None)
        with bound(request_id=getattr(req.context, "request_id", None),
                   client_id=str(principal.client_id) if principal else None):
            log.info("%s %s %s", req.method, route, status,
                     extra={"method": req.method, "route": route, "status": status,
                            "duration_ms": round(elapsed * 1000, 2)})


def route_of(req: falcon.Request, static_prefixes: tuple[str, ...]) -> str:
    """The route's template: a static file counts under its directory's route, not one per file."""
    if req.uri_template:
        return req.uri_template
    for prefix in static_prefixes:  # each ends with "/"
        if req.path.startswith(prefix):
            return f"{prefix}{{file}}"
    return "unmatched"


class QueueDepths(Protocol):
    """What the metrics read of a broker's queues."""

    def depths(self, *, now: datetime | None = None) -> list[QueueDepth]: ...


class PipelineState(Collector):
    """Read at scrape time: bookings by status and the alerting gauges from PostgreSQL, queue
    depths and latency from the broker. A source that is down is left out of the answer (and
    logged), so requests and latencies are still scraped while it is away."""

    def __init__(self, sessions: sessionmaker[Session], inspector: QueueDepths, settings: Settings) -> None:
        self.sessions, self.inspector, self.settings = sessions, inspector, settings

    def collect(self) -> Iterator[Metric]:
        for source in (self._database, self._queues, self._notifications):
            try:
                yield from list(source())
            except Exception:
                log.warning("metrics: %s could not be read", source.__name__.strip("_"), exc_info=True)

    def _database(self) -> Iterator[Metric]:
        with self.sessions() as session:
            counts = count_by_status(session)
            state = pipeline_gauges(
                session, utc_now(), stuck_after=self.settings.reconcile_after, leader_lock=LEADER_LOCK
            )
        by_status = GaugeMetricFamily("bookings", "Bookings in the hot tables by status", labels=["status"])
        for status in BookingStatus:
            by_status.add_metric([status.value], counts.get(status.value, 0))
        yield by_status
        yield _gauge("bookings_outbox_messages", "Outbox messages not yet acknowledged by a worker",
                     state.outbox_messages)
        yield _gauge("bookings_outbox_oldest_age_seconds", "Age of the oldest outbox message (0: none)",
                     state.outbox_oldest_age_seconds)
        yield _gauge("stripe_webhook_events_unapplied", "Ledger events received and not yet applied",
                     state.webhooks_unapplied)
        yield _gauge("stripe_webhook_oldest_unapplied_age_seconds",
                     "Age of the oldest ledger event not yet applied (0: none)",
                     state.webhooks_oldest_unapplied_age_seconds)
        attention = GaugeMetricFamily(
            "stripe_webhook_events_needing_attention",
            "Ledger events an operator has to look at, by outcome (all time; grows by one per event)",
            labels=["outcome"],
        )
        for outcome, count in state.webhooks_needing_attention.items():
            attention.add_metric([outcome], count)
        yield attention
        payments = GaugeMetricFamily(
            "bookings_payments_recent", "Payments settled in the last 15 minutes, by outcome", labels=["outcome"]
        )
        payments.add_metric(["paid"], state.payments_paid_recently)
        payments.add_metric(["declined"], state.payments_declined_recently)
        yield payments
        yield _gauge("bookings_payments_stuck",
                     "Payments whose Stripe step was claimed longer ago than RECONCILE_AFTER_SECONDS",
                     state.payments_stuck)
        yield _gauge("bookings_scheduler_leaders", "Schedulers holding the leader lock (1 when healthy)",
                     state.scheduler_leaders)

    def _queues(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily("bookings_queue_messages", "Broker messages by queue and state",
                                     labels=["queue", "state"])
        latency = GaugeMetricFamily("bookings_queue_latency_seconds",
                                    "Age of the oldest ready message: how long work waits", labels=["queue"])
        for depth in self.inspector.depths():
            for state, count in (("ready", depth.ready), ("delayed", depth.delayed),
                                 ("in_flight", depth.in_flight), ("dead", depth.dead)):
                if count is not None:  # RabbitMQ cannot tell what is in flight: no sample rather than 0
                    messages.add_metric([depth.name, state], count)
            latency.add_metric([depth.name], depth.latency_seconds)
        yield messages
        yield latency


    def _notifications(self) -> Iterator[Metric]:
        """Webhook deliveries and customer emails by status, and how late the oldest due delivery
        is (deliveries failed for good are what needs a look)."""
        with self.sessions() as session:
            figures = notification_figures(session, utc_now())
        deliveries = GaugeMetricFamily("webhook_deliveries", "Webhook deliveries by status", labels=["status"])
        for status in DeliveryStatus:
            deliveries.add_metric([status.value], figures.deliveries.get(status.value, 0))
        yield deliveries
        yield _gauge("webhook_delivery_oldest_due_seconds", "How long the oldest due webhook delivery has waited",
                     figures.oldest_due_seconds)
        mails = GaugeMetricFamily("booking_emails", "Customer emails by status", labels=["status"])
        for email_status in EmailStatus:
            mails.add_metric([email_status.value], figures.emails.get(email_status.value, 0))
        yield mails
        yield _gauge("booking_email_oldest_due_seconds", "How long the oldest due customer email has waited",
                     figures.oldest_due_email_seconds)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def metrics_registry(state: PipelineState) -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, LATENCY, WEBHOOK_EVENTS_REJECTED):
            registry.register(collector)
    registry.register(state)
    return registry


class Metrics:
    """`GET /metrics` on the API's port, for an operator key (Prometheus sends it as a Bearer)."""

    auth = "operator"

    def __init__(self, state: PipelineState) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(metrics_registry(self.state))


class OneThread:
    """Reads queue depths on one thread of its own: the listener answers each scrape on a new
    thread, and the RabbitMQ broker keeps a connection per thread (pika's are not shared), so
    each scrape would open one more."""

    def __init__(self, inspector: QueueInspection) -> None:
        self.inspector = inspector
        self.thread = ThreadPoolExecutor(1, "queue-depths")

    def depths(self, *, now: datetime | None = None) -> list[QueueDepth]:
        return self.thread.submit(lambda: self.inspector.depths(now=now)).result(timeout=10)


def serve_metrics(settings: Settings) -> Any:
    """The METRICS_BIND listener, in the process gunicorn's master starts (api/metrics_listener.py):
    one per web server whatever its number of workers, answering for all of them."""
    from db.engine import make_engine, make_sessions
    from tasks.broker import make_broker, make_inspector

    assert settings.metrics_bind is not None
    host, port = settings.metrics_bind
    sessions = make_sessions(make_engine(settings.database_url, pool_size=1, application_name="bookings-metrics"))
    if settings.uses_rabbitmq:
        # The queues are RabbitMQ's, not Redis's (where nothing would be found: all zeros).
        inspector: QueueDepths = OneThread(make_inspector(make_broker(settings)))
    else:
        inspector = QueueInspector(redis.Redis.from_url(settings.redis_url, socket_timeout=2), settings.broker_namespace)
    state = PipelineState(sessions, inspector, settings)
    server, _ = start_http_server(port, addr=host, registry=metrics_registry(state))
    log.info("metrics served on %s:%s", host, port)
    return server
