"""The operators' console: its JSON under /ops/api/ and what the workers write for it."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import dramatiq
import redis
from sqlalchemy import text

from db.engine import transaction
from db.models import Booking, Payment, WebhookEndpoint, WebhookEvent
from db.unit_of_work import UnitOfWork
from domain.lifecycle import BookingStatus
from services import queues
from tasks.queue_inspection import QueueInspector
from tasks.worker_activity import WorkerActivity, WorkerRegistry, worker_key
from tests.integration.test_operations import _basic, _force_dead_letter, _operator_key
from tests.support import REDIS_BROKER_ONLY, first_event, seat_request, wait_for, wait_for_statuses


def test_queues_json_names_each_queue_and_each_live_worker_process(app, runtime, worker):
    key = _operator_key(runtime)

    def workers():
        return app.simulate_get("/ops/api/queues", headers=_basic(key)).json["workers"]

    (me,) = wait_for(workers, what="the worker's first heartbeat")
    data = app.simulate_get("/ops/api/queues", headers=_basic(key)).json
    assert set(data) == {"queues", "workers"}
    assert [q["name"] for q in data["queues"]] == [
        queues.BOOKINGS, queues.PAYMENTS, queues.WEBHOOKS, queues.MAINTENANCE, queues.NOTIFICATIONS,
    ]
    assert set(data["queues"][0]) == {"name", "ready", "delayed", "in_flight", "dead", "latency_seconds"}
    assert set(me) == {"host", "pid", "queues", "threads", "busy", "heartbeat_at", "current"}
    assert me["pid"] == os.getpid() and me["threads"] == 8 and queues.BOOKINGS in me["queues"]


def _message(actor: str = "place_booking") -> SimpleNamespace:
    return SimpleNamespace(message_id=uuid.uuid4().hex, actor_name=actor, queue_name=queues.BOOKINGS,
                           args=("b-1",), options={"request_id": "req-42"}, failed=False)


def test_a_worker_shows_what_each_thread_runs_and_leaves_the_registry_when_it_stops(settings):
    client = redis.Redis.from_url(settings.redis_url)
    activity = WorkerActivity(settings.redis_url, settings.broker_namespace, "host-1-abc")
    broker = SimpleNamespace(get_declared_queues=lambda: {queues.BOOKINGS})
    activity.after_worker_boot(broker, SimpleNamespace(consumer_whitelist=None, worker_threads=4))
    message = _message()
    activity.before_process_message(broker, message)
    activity.beat(now=1_000_000.0)

    registry = WorkerRegistry(client, settings.broker_namespace)
    (entry,) = registry.live_workers()
    assert entry["busy"] == 1 and entry["threads"] == 4
    assert entry["current"][0]["actor"] == "place_booking" and entry["current"][0]["request_id"] == "req-42"
    assert 0 < client.ttl(worker_key(settings.broker_namespace, "host-1-abc")) <= 9  # gone if not renewed

    activity.after_process_message(broker, message)
    activity.before_worker_shutdown(broker, None)
    assert registry.live_workers() == []
    client.close()


def test_the_overview_counts_processed_and_failed_messages_per_minute(app, api, runtime, worker):
    key = _operator_key(runtime)
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[:1])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    _force_dead_letter(runtime)

    def counted():
        hour = app.simulate_get("/ops/api/overview", headers=_basic(key)).json["last_hour"]
        return hour if hour["done"] >= 1 and hour["dead_lettered"] >= 1 else None

    wait_for(counted, what="the worker's counts to reach the overview")
    overview = app.simulate_get("/ops/api/overview", headers=_basic(key)).json
    assert len(overview["per_minute"]) == 60
    assert overview["flow"]["by_status"] == {"authorized": 1}
    assert overview["flow"]["settled_last_hour"] == 1 and overview["flow"]["settle_p50_seconds"] > 0
    page = app.simulate_get("/ops/", headers=_basic(key)).text
    assert "<svg class=\"chart\"" in page and "failed 0.02/s (1)" in page


def test_the_overview_shows_webhook_events_an_operator_must_look_at(app, runtime):
    key = _operator_key(runtime)
    with transaction(runtime.context.sessions) as session:
        session.add_all([
            WebhookEvent(id=f"evt_{n}", type="payment_intent.succeeded", payload={}, outcome=outcome)
            for n, outcome in enumerate(["unmatched", "unmatched", "mismatch", "applied", None])
        ])
    flow = app.simulate_get("/ops/api/overview", headers=_basic(key)).json["flow"]
    assert flow["webhook_problems"] == {"unmatched": 2, "mismatch": 1, "rejected": 0}
    assert flow["webhook_backlog"] == 5  # none of them was marked processed
    page = app.simulate_get("/ops/", headers=_basic(key)).text
    assert 'id="webhooks-unmatched" class="bad">2<' in page


@REDIS_BROKER_ONLY
def test_queue_latency_is_the_age_of_the_oldest_ready_message(runtime, settings):
    runtime.context.dispatch([_staged(), _staged()])
    inspector = QueueInspector(redis.Redis.from_url(settings.redis_url), settings.broker_namespace)
    now = runtime.context.clock() + timedelta(seconds=30)
    bookings = next(d for d in inspector.depths(now=now) if d.name == queues.BOOKINGS)
    assert bookings.ready == 2 and 29 < bookings.latency_seconds < 32


@REDIS_BROKER_ONLY
def test_a_delayed_message_is_listed_with_its_next_attempt(app, runtime):
    key = _operator_key(runtime)
    message: dramatiq.Message = dramatiq.Message(
        queue_name=queues.BOOKINGS, actor_name="place_booking", args=("later",), kwargs={}, options={},
    )
    runtime.broker.enqueue(message, delay=60_000)
    data = app.simulate_get("/ops/api/queues", headers=_basic(key)).json
    assert next(q for q in data["queues"] if q["name"] == queues.BOOKINGS)["delayed"] == 1
    (delayed,) = app.simulate_get("/ops/api/delayed", headers=_basic(key)).json["delayed"]
    assert delayed["args"] == ["later"] and delayed["due_at"] > runtime.context.clock().isoformat()
    assert "later" in app.simulate_get("/ops/queues", headers=_basic(key)).text


def _staged():
    from services.outbox import StagedMessage

    return StagedMessage(uuid.uuid4(), *queues.PLACE_BOOKING, ("x",), {})


def _dead_letters(app, key, **params):
    return app.simulate_get("/ops/api/dead", params=params, headers=_basic(key)).json


def _post_form(app, key, body):
    token = re.search(r'name="token" value="(\w+)"', app.simulate_get("/ops/dead", headers=_basic(key)).text).group(1)
    return app.simulate_post("/ops/dead", body=f"token={token}&{body}",
                             headers={**_basic(key), "Content-Type": "application/x-www-form-urlencoded"})


@REDIS_BROKER_ONLY
def test_dead_letters_filter_by_actor_and_error_and_retry_all_that_match(app, runtime, worker):
    key = _operator_key(runtime)
    for _ in range(3):
        _force_dead_letter(runtime)
    wait_for(lambda: _dead_letters(app, key)["matching"] == 3 or None, what="three dead letters")
    assert _dead_letters(app, key, actor="place_booking", error="valueerror")["matching"] == 3
    assert _dead_letters(app, key, error="CardError")["matching"] == 0
    assert _dead_letters(app, key, queue=queues.PAYMENTS)["matching"] == 0

    retried = _post_form(app, key, "do=retry-matching&actor=place_booking&error=ValueError")
    assert retried.status_code == 303 and "done=retry+3" in retried.headers["Location"]
    assert _dead_letters(app, key)["matching"] == 0
    # Retried afresh, with the default retry budget: each fails again and waits for its next attempt.
    delayed = wait_for(lambda: (d := app.simulate_get("/ops/api/delayed", headers=_basic(key)).json["delayed"])
                       and len(d) == 3 and d, what="the retried messages to wait for their next attempt")
    assert all(m["retries"] == 1 and "ValueError" in m["last_error"] for m in delayed)


def test_dead_letters_delete_a_selection(app, runtime, worker):
    key = _operator_key(runtime)
    for _ in range(3):
        _force_dead_letter(runtime)
    letters = wait_for(lambda: (d := _dead_letters(app, key)["letters"]) and len(d) == 3 and d, what="three dead letters")
    picked = "&".join(f"letter={d['queue']}/{d['redis_id']}" for d in letters[:2])
    assert _post_form(app, key, f"do=delete&{picked}").status_code == 303
    assert [d["redis_id"] for d in _dead_letters(app, key)["letters"]] == [letters[2]["redis_id"]]


def _authorized_booking(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[:1])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    with runtime.context.sessions() as session:
        intent = session.get(Payment, uuid.UUID(booking["id"])).intent_id
    return booking, intent


def test_a_booking_is_found_by_email_intent_or_id_and_its_timeline_tells_its_story(app, api, runtime, worker):
    key = _operator_key(runtime)
    booking, intent = _authorized_booking(api, runtime)
    with transaction(runtime.context.sessions) as session:
        session.add(WebhookEvent(id="evt_late", type="payment_intent.succeeded", payload={},
                                 booking_id=uuid.UUID(booking["id"]), outcome="mismatch", note="amount differs"))
    email = seat_request(uuid.uuid4(), [])["customer"]["email"]

    found = app.simulate_get("/ops/api/bookings", params={"q": email.upper()}, headers=_basic(key)).json["items"]
    assert [b["id"] for b in found] == [booking["id"]]
    by_intent = app.simulate_get("/ops/bookings", params={"q": intent}, headers=_basic(key))
    assert by_intent.status_code == 303 and by_intent.headers["Location"] == f"/ops/bookings/{booking['id']}"

    story = app.simulate_get(f"/ops/api/bookings/{booking['id']}", headers=_basic(key)).json
    titles = [e["title"] for e in story["entries"]]
    assert "new → requested" in titles and any(t.endswith("→ authorized") for t in titles)
    assert "payment_intent.succeeded · mismatch" in titles
    assert any(e["key"] == f"booking-{booking['id']}-authorize-1" for e in story["entries"])
    assert "client_secret" not in story["payment"]
    page = app.simulate_get(f"/ops/bookings/{booking['id']}", headers=_basic(key)).text
    assert intent in page and "amount differs" in page and "Cancel booking" in page
    assert app.simulate_get(f"/ops/bookings/{uuid.uuid4()}", headers=_basic(key)).status_code == 404


def test_an_operator_cancels_from_the_booking_page_once_however_often_the_form_is_sent(app, api, runtime, worker):
    key = _operator_key(runtime)
    booking, _ = _authorized_booking(api, runtime)
    page = app.simulate_get(f"/ops/bookings/{booking['id']}", headers=_basic(key)).text
    token = re.search(r'name="token" value="(\w+)"', page).group(1)
    form_key = re.search(r'name="key" value="([\w-]+-cancel)"', page).group(1)
    headers = {**_basic(key), "Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(2):
        sent = app.simulate_post(f"/ops/bookings/{booking['id']}/cancel",
                                 body=f"token={token}&key={form_key}&refund=none", headers=headers)
        assert sent.status_code == 303 and sent.headers["Location"].endswith("?done=cancel")
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"cancelled"})
    with runtime.context.sessions() as session:
        assert session.get(Booking, uuid.UUID(booking["id"])).cancel_reason == "cancelled_by_operator"
    refused = app.simulate_post(f"/ops/bookings/{booking['id']}/refund",
                                body=f"token={token}&key=k2&amount=100", headers=headers)
    assert refused.status_code == 303 and "failed=" in refused.headers["Location"]


def test_event_sales_count_held_seats_per_event(app, api, runtime, worker):
    key = _operator_key(runtime)
    event_id, _ = first_event(runtime.context.sessions)
    booking, _ = _authorized_booking(api, runtime)
    events = app.simulate_get("/ops/api/events", headers=_basic(key)).json["events"]
    mine = next(e for e in events if e["id"] == str(event_id))
    assert mine["held"] == 1 and mine["sold"] == 0 and mine["capacity"] > 1 and mine["revenue"] == 0
    assert sum(e["held"] for e in events) == 1
    page = app.simulate_get("/ops/events", headers=_basic(key)).text
    assert f"<td>{mine['name']}</td>" in page


def _endpoint(runtime, client_id, url):
    with transaction(runtime.context.sessions) as session:
        endpoint = WebhookEndpoint(client_id=client_id, url=url, events=["*"], secret="whsec_console")
        session.add(endpoint)
        session.flush()
        return endpoint.id


def test_failing_webhook_endpoints_are_listed_with_their_log_and_retried(app, api, runtime):
    key = _operator_key(runtime)
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[:1])).json
    with runtime.context.sessions() as session:
        client_id, client_name = session.execute(
            text("SELECT c.id, c.name FROM bookings b JOIN clients c ON c.id = b.client_id WHERE b.id = :id"),
            {"id": booking["id"]}).one()
    failing = _endpoint(runtime, client_id, "https://hooks.example.com/bookings?v=1")
    healthy = _endpoint(runtime, client_id, "https://fine.example.org/hooks")
    with UnitOfWork(runtime.context.sessions) as uow:
        locked = uow.lock(uuid.UUID(booking["id"]))
        for target in (BookingStatus.AWAITING_PAYMENT, BookingStatus.AUTHORIZED, BookingStatus.CANCELLED):
            locked.move(target, datetime.now(UTC))
        uow.commit()
    with transaction(runtime.context.sessions) as session:
        # The failing endpoint: authorized given up on an hour ago, cancelled still retried; the other all delivered.
        session.execute(text("""
            UPDATE webhook_deliveries d SET
              status = CASE WHEN endpoint_id = :healthy THEN 'succeeded' WHEN e.type = 'booking.authorized'
                            THEN 'failed' ELSE 'pending' END,
              attempts = CASE WHEN e.type = 'booking.authorized' THEN 12 ELSE 2 END,
              last_status_code = CASE WHEN e.type = 'booking.authorized' THEN 500 END,
              last_error = CASE WHEN e.type = 'booking.cancelled' THEN 'timeout' END,
              created_at = now() - interval '1 hour',
              finished_at = CASE WHEN e.type = 'booking.authorized' THEN now() - interval '1 minute' END,
              next_attempt_at = now() + interval '1 minute'
            FROM notification_events e WHERE e.id = d.event_id
        """), {"healthy": healthy})

    (listed,) = app.simulate_get("/ops/api/webhooks", headers=_basic(key)).json["endpoints"]
    assert (listed["endpoint_id"], listed["client"], listed["host"]) == (str(failing), client_name, "hooks.example.com")
    assert (listed["failed"], listed["retrying"]) == (1, 1)
    assert (listed["last_status_code"], listed["last_error"]) == (None, "timeout")  # the latest attempt's
    assert 3600 <= listed["oldest_undelivered_seconds"] < 3600 + 60
    page = app.simulate_get("/ops/webhooks", headers=_basic(key)).text
    assert f'href="/ops/webhooks/{failing}"' in page and "hooks.example.com" in page and "fine.example.org" not in page

    log = app.simulate_get(f"/ops/api/webhooks/{failing}", headers=_basic(key)).json
    assert sorted((d["type"], d["status"]) for d in log["deliveries"]) == [
        ("booking.authorized", "failed"), ("booking.cancelled", "pending")]
    page = app.simulate_get(f"/ops/webhooks/{failing}", headers=_basic(key)).text
    token = re.search(r'name="token" value="(\w+)"', page).group(1)
    headers = {**_basic(key), "Content-Type": "application/x-www-form-urlencoded"}
    retried = app.simulate_post(f"/ops/webhooks/{failing}", body=f"token={token}&do=retry-failed", headers=headers)
    assert retried.status_code == 303 and retried.headers["Location"] == f"/ops/webhooks/{failing}?done=1"
    log = app.simulate_get(f"/ops/api/webhooks/{failing}", headers=_basic(key)).json
    assert {d["status"] for d in log["deliveries"]} == {"pending"}
    (pending,) = [d for d in log["deliveries"] if d["type"] == "booking.cancelled"]
    one = app.simulate_post(f"/ops/webhooks/{failing}", body=f"token={token}&do=retry:{pending['id']}", headers=headers)
    assert one.status_code == 303
    assert app.simulate_get("/ops/api/webhooks", headers=_basic(key)).json["endpoints"][0]["failed"] == 0
    forged = app.simulate_post(f"/ops/webhooks/{failing}", body="token=x&do=retry-failed", headers=headers)
    assert forged.status_code == 403 and forged.json["error"]["code"] == "forbidden"
    assert app.simulate_post(f"/ops/webhooks/{failing}", body=f"token={token}&do=drop",
                             headers=headers).json["error"]["code"] == "invalid_action"
    assert app.simulate_get(f"/ops/webhooks/{uuid.uuid4()}", headers=_basic(key)).status_code == 404
