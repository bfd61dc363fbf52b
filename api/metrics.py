"""Prometheus metrics of the API: requests by route and status, latency, bookings by status,
Stripe events rejected at the edge.

Under gunicorn with several workers, prometheus-client's multiprocess mode aggregates the
workers' metrics (PROMETHEUS_MULTIPROC_DIR, set up in api/gunicorn_conf.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from config.logging import bound
from db.queries.bookings import count_by_status
from db.queries.notifications import notification_figures
from domain.lifecycle import BookingStatus
from domain.notifications import DeliveryStatus, EmailStatus
from domain.webhooks import HANDLED_TYPES
from services.context import Context

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
    """Counts and times every request by its route template, and writes one access log line."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        elapsed = time.perf_counter() - getattr(req.context, "started", time.perf_counter())
        route = req.uri_template or "unmatched"
        status = resp.status_code if hasattr(resp, "status_code") else int(str(resp.status)[:3])
        REQUESTS.labels(req.method, route, str(status)).inc()
        LATENCY.labels(req.method, route).observe(elapsed)
        principal = getattr(req.context, "principal", None)
        with bound(request_id=getattr(req.context, "request_id", None),
                   client_id=str(principal.client_id) if principal else None):
            log.info("%s %s %s", req.method, route, status,
                     extra={"method": req.method, "route": route, "status": status,
                            "duration_ms": round(elapsed * 1000, 2)})


class BookingsByStatus(Collector):
    """Bookings per status, read from PostgreSQL at scrape time (one GROUP BY)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("bookings", "Bookings in the hot tables by status", labels=["status"])
        with self.ctx.sessions() as session:
            counts = count_by_status(session)
        for status in BookingStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family


class Notifications(Collector):
    """Webhook deliveries and customer emails by status, and how late the oldest due delivery is,
    read from PostgreSQL at scrape time (deliveries failed for good are what needs a look)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.ctx.sessions() as session:
            figures = notification_figures(session, self.ctx.clock())
        deliveries = GaugeMetricFamily("webhook_deliveries", "Webhook deliveries by status", labels=["status"])
        for status in DeliveryStatus:
            deliveries.add_metric([status.value], figures.deliveries.get(status.value, 0))
        yield deliveries
        yield GaugeMetricFamily(
            "webhook_delivery_oldest_due_seconds", "How long the oldest due webhook delivery has waited",
            value=figures.oldest_due_seconds,
        )
        mails = GaugeMetricFamily("booking_emails", "Customer emails by status", labels=["status"])
        for email_status in EmailStatus:
            mails.add_metric([email_status.value], figures.emails.get(email_status.value, 0))
        yield mails


class Metrics:
    auth = None  # scraped by Prometheus from inside the network; exposes no booking data

    def __init__(self, ctx: Context) -> None:
        self.bookings = BookingsByStatus(ctx)
        self.notifications = Notifications(ctx)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            MultiProcessCollector(registry)
        else:
            for collector in (REQUESTS, LATENCY, WEBHOOK_EVENTS_REJECTED):
                registry.register(collector)
        registry.register(self.bookings)
        registry.register(self.notifications)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(registry)
