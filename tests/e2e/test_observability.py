"""Metrics from the running processes: the API under gunicorn (several workers) and the workers."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from sqlalchemy import text

from config.settings import Settings
from db.engine import make_engine, make_sessions, transaction
from db.models import WebhookEndpoint
from db.queries.clients import create_client
from services import queues
from services.outbox import StagedMessage
from tasks.broker import make_broker, make_dispatcher
from tests.integration.notification_fixtures import Receiver
from tests.support import first_event, seat_request, wait_for, wait_for_statuses


def test_a_booking_shows_in_api_and_worker_metrics(stack, settings):
    sessions = make_sessions(make_engine(settings.database_url, pool_size=2))
    with transaction(sessions) as session:
        key = create_client(session, "metrics")[1]
    stack.start_worker(processes=1, threads=4)
    event_id, seats = first_event(sessions)
    with httpx.Client(base_url=stack.base_url, trust_env=False, timeout=10) as http:
        booking = http.post("/v1/bookings", json=seat_request(event_id, seats[:1]),
                            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}).json()
        wait_for_statuses(sessions, [booking["id"]], {"authorized"})
        # With METRICS_BIND set, the API's port has no /metrics at all: only the listener serves them.
        assert http.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 404
    api_metrics = httpx.get(f"http://{stack.env['METRICS_BIND']}/metrics", trust_env=False, timeout=10).text
    assert re.search(r'http_requests_total\{method="POST",route="/v1/bookings",status="202"\} 1\.0', api_metrics)
    assert 'bookings{status="authorized"} 1.0' in api_metrics

    assert "bookings_scheduler_leaders 0.0" in api_metrics and "bookings_queue_latency_seconds{" in api_metrics
    worker_url = f"http://{stack.env['WORKER_METRICS_BIND']}/metrics"

    def worker_metrics() -> str | None:
        try:
            text = httpx.get(worker_url, trust_env=False, timeout=2).text
        except httpx.HTTPError:
            return None
        return text if 'actor_name="place_booking"' in text else None

    text = wait_for(worker_metrics, what="the worker's metrics to show the placement")
    assert re.search(r'dramatiq_messages_total\{actor_name="place_booking",queue_name="bookings"\} 1\.0', text)
    assert "dramatiq_message_duration_milliseconds_bucket" in text


def test_a_webhook_delivery_shows_its_latency_in_the_worker_metrics(stack, settings):
    receiver = Receiver()
    stack.env["WEBHOOK_ALLOW_PRIVATE_URLS"] = "true"
    sessions = make_sessions(make_engine(settings.database_url, pool_size=2))
    with transaction(sessions) as session:
        client, key = create_client(session, "latency")
        session.flush()
        session.add(WebhookEndpoint(client_id=client.id, url=receiver.url, events=["booking.authorized"],
                                    secret="whsec_latency"))
    stack.start_worker(processes=1, threads=4)
    broker = make_broker(Settings.from_env(stack.env))
    dispatch = make_dispatcher(broker)
    event_id, seats = first_event(sessions)
    try:
        with httpx.Client(base_url=stack.base_url, trust_env=False, timeout=10) as http:
            booking = http.post("/v1/bookings", json=seat_request(event_id, seats[:1]),
                                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}).json()
        wait_for_statuses(sessions, [booking["id"]], {"authorized"})
        # What the scheduler enqueues every few seconds.
        wait_for(lambda: dispatch([StagedMessage(uuid.uuid4(), *queues.DELIVER_WEBHOOKS, ())]) or receiver.received,
                 interval=0.5, what="the delivery")
        with sessions() as session:
            created_at, delivered_at = session.execute(text(
                "SELECT e.created_at, d.finished_at FROM webhook_deliveries d JOIN notification_events e"
                " ON e.id = d.event_id WHERE d.status = 'succeeded'")).one()
        worker_url = f"http://{stack.env['WORKER_METRICS_BIND']}/metrics"
        text_ = httpx.get(worker_url, trust_env=False, timeout=2).text
    finally:
        receiver.stop()
        broker.close()

    latency = 'webhook_delivery_latency_seconds_{}{{type="booking.authorized"}} (\\S+)'
    assert float(re.search(latency.format("count"), text_)[1]) == 1.0  # type: ignore[index]
    observed = float(re.search(latency.format("sum"), text_)[1])  # type: ignore[index]
    assert observed == pytest.approx((delivered_at - created_at).total_seconds(), abs=0.001)
    assert re.search(r'webhook_delivery_attempts_total\{outcome="succeeded",type="booking.authorized"\} 1\.0', text_)
