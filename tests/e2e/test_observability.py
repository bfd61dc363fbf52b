"""Metrics from the running processes: the API under gunicorn (several workers) and the workers."""

from __future__ import annotations

import re
import uuid

import httpx

from db.engine import make_engine, make_sessions, transaction
from db.queries.clients import create_client
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
