"""/metrics: who may read it, where it is served, and the figures the shipped alert rules watch."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import timedelta

import falcon.testing
import httpx
import psycopg
import redis

from db.engine import transaction
from db.models import OutboxMessage, WebhookEvent
from db.queries.alerting import pipeline_gauges
from db.queries.clients import create_client
from devtools.local_services import free_port
from services import queues
from services.outbox import StagedMessage
from tasks.scheduler import LEADER_LOCK
from tests.support import BOTH_BROKERS, wait_for


def _operator(runtime) -> dict[str, str]:
    with transaction(runtime.context.sessions) as session:
        return {"Authorization": f"Bearer {create_client(session, 'prometheus', operator=True)[1]}"}


def test_metrics_on_the_api_port_need_an_operator_key(app, api, runtime):
    assert app.simulate_get("/metrics").status_code == 401
    assert app.simulate_get("/metrics", headers=api.auth()).status_code == 403
    answer = app.simulate_get("/metrics", headers=_operator(runtime))
    assert answer.status_code == 200 and "bookings_scheduler_leaders" in answer.text


def test_static_files_count_under_their_route_not_as_unmatched(app, runtime):
    from api.metrics import REQUESTS

    # The counters are the process's: other tests' requests are in them too, so count this one's.
    unmatched = REQUESTS.labels(method="GET", route="unmatched", status="200")
    before = unmatched._value.get()
    assert app.simulate_get("/docs/static/favicon-32x32.png").status_code == 200
    text = app.simulate_get("/metrics", headers=_operator(runtime)).text
    assert re.search(r'http_requests_total\{method="GET",route="/docs/static/\{file\}",status="200"\} [1-9]', text)
    assert unmatched._value.get() == before


def test_with_metrics_bind_set_the_api_port_serves_no_metrics(runtime, settings):
    from api.app import create_app

    ctx = dataclasses.replace(runtime.context, settings=dataclasses.replace(settings, metrics_bind=("127.0.0.1", 1)))
    with redis.Redis.from_url(settings.redis_url) as client:
        app = falcon.testing.TestClient(create_app(ctx, redis_client=client))
        assert app.simulate_get("/metrics", headers=_operator(runtime)).status_code == 404


def test_the_metrics_bind_listener_answers_without_a_key(settings):
    from api.metrics import serve_metrics

    port = free_port()
    server = serve_metrics(dataclasses.replace(settings, metrics_bind=("127.0.0.1", port)))
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False, timeout=10).text
    finally:
        server.shutdown()
        server.server_close()
    for name in ("bookings_outbox_messages", "bookings_queue_messages", "bookings_payments_recent"):
        assert f"# TYPE {name} gauge" in text


@BOTH_BROKERS
def test_the_metrics_bind_listener_counts_the_messages_on_the_configured_broker(runtime, settings):
    """On RabbitMQ as on Redis: the listener reads the broker the settings name, not Redis alone."""
    from api.metrics import serve_metrics

    runtime.context.dispatch([StagedMessage(uuid.uuid4(), *queues.PLACE_BOOKING, (str(uuid.uuid4()),))
                              for _ in range(3)])
    port = free_port()
    server = serve_metrics(dataclasses.replace(settings, metrics_bind=("127.0.0.1", port)))
    try:
        texts = [httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False, timeout=10).text for _ in range(3)]
    finally:
        server.shutdown()
        server.server_close()
    ready = 'bookings_queue_messages{queue="bookings",state="ready"} 3.0'
    assert all(ready in text for text in texts), texts[0]


def test_backlog_ages_and_webhook_problems_are_read_from_the_tables(runtime):
    now = runtime.context.clock()
    with transaction(runtime.context.sessions) as session:
        session.add(OutboxMessage(queue_name="bookings", actor_name="place_booking", args=["x"],
                                  created_at=now - timedelta(minutes=10)))
        session.add(WebhookEvent(id="evt_old", type="payment_intent.succeeded", payload={},
                                 received_at=now - timedelta(minutes=7)))
        session.add(WebhookEvent(id="evt_odd", type="payment_intent.succeeded", payload={}, received_at=now,
                                 processed_at=now, outcome="mismatch"))
    with runtime.context.sessions() as session:
        gauges = pipeline_gauges(session, now, stuck_after=timedelta(minutes=2), leader_lock=LEADER_LOCK)
    assert gauges.outbox_messages == 1 and 599 < gauges.outbox_oldest_age_seconds < 601
    assert gauges.webhooks_unapplied == 1 and 419 < gauges.webhooks_oldest_unapplied_age_seconds < 421
    assert gauges.webhooks_needing_attention == {"unmatched": 0, "mismatch": 1, "rejected": 0}
    assert gauges.payments_stuck == 0 and gauges.payments_paid_recently == 0


def test_the_scheduler_leader_gauge_follows_the_advisory_lock(runtime, settings):
    def leaders() -> int:
        with runtime.context.sessions() as session:
            now = runtime.context.clock()
            return pipeline_gauges(session, now, stuck_after=timedelta(minutes=2), leader_lock=LEADER_LOCK).scheduler_leaders

    assert leaders() == 0
    with psycopg.connect(settings.database_url, autocommit=True) as leader:
        assert leader.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone() == (True,)
        assert leaders() == 1
    # The lock goes with the leader's backend, which PostgreSQL ends a moment after the close.
    wait_for(lambda: leaders() == 0, timeout=10, what="the leader's lock to go with its connection")
