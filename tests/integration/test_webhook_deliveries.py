"""Webhook deliveries reach real receivers: signed, retried on the schedule, once per event."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from adapters.webhooks import WebhookSender
from db.engine import transaction
from db.queries.clients import create_client
from db.unit_of_work import UnitOfWork
from domain.lifecycle import BookingStatus
from services import notifications
from services.notifications import Deliverer
from tasks.notification_metrics import DeliveryMetrics
from testkit.webhook_receiver import documented_verifier
from tests.integration.notification_fixtures import Clock, Receiver
from tests.support import first_event, seat_request, wait_for, wait_for_statuses

S = BookingStatus
# The deliverer's own threads read the database: the test's writes must be committed for them.
pytestmark = pytest.mark.commits


@pytest.fixture
def settings(settings: Any) -> Any:
    return dataclasses.replace(settings, webhook_allow_private_urls=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


def register(api: Any, url: str, events: list[str]) -> dict[str, Any]:
    answer = api.post("/v1/webhook-endpoints", {"url": url, "events": events})
    assert answer.status_code == 201, answer.json
    return answer.json


def _booking(api: Any, runtime: Any, seat: int) -> str:
    event_id, seats = first_event(runtime.context.sessions)
    return api.book(seat_request(event_id, seats[seat:seat + 1])).json["id"]


def _move(runtime: Any, booking_id: str, *targets: BookingStatus, at: datetime | None = None) -> None:
    with UnitOfWork(runtime.context.sessions) as uow:
        locked = uow.lock(uuid.UUID(booking_id))
        for target in targets:
            locked.move(target, at or datetime.now(UTC))
        uow.commit()


def _deliveries(runtime: Any) -> list[Any]:
    with runtime.engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT event_id, status, attempts, last_status_code, next_attempt_at FROM webhook_deliveries"
        )).all())


def test_deliveries_by_workers_are_signed_so_the_documented_helper_verifies_them(api, runtime, worker, receiver):
    secret = register(api, receiver.url, ["*"])["secret"]
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[:1])).json["id"]
    wait_for_statuses(runtime.context.sessions, [booking_id], {"authorized"})
    api.post(f"/v1/bookings/{booking_id}/confirm", key=uuid.uuid4().hex)
    wait_for_statuses(runtime.context.sessions, [booking_id], {"confirmed"})

    wait_for(lambda: runtime.actors["deliver_due_webhooks"].send() and len(receiver.received) >= 2,
             interval=0.5, what="two deliveries")

    verify = documented_verifier()
    bodies = [json.loads(r.body) for r in receiver.received]
    assert sorted(b["type"] for b in bodies) == ["booking.authorized", "booking.confirmed"]  # in no promised order
    assert all(verify(r.body, r.headers["Bookings-Signature"], secret) for r in receiver.received)
    assert not verify(receiver.received[0].body, receiver.received[0].headers["Bookings-Signature"], "whsec_other")
    assert not verify(receiver.received[0].body + b" ", receiver.received[0].headers["Bookings-Signature"], secret)
    assert all(b["id"].startswith("evt_") and b["data"]["booking"]["id"] == booking_id for b in bodies)
    assert {status for _, status, *_ in _deliveries(runtime)} == {"succeeded"}


def _deliverer(**kwargs: Any) -> Deliverer:
    return Deliverer(WebhookSender(allow_private=True, **kwargs), jitter=lambda: 0.5)


def _sweep_until_done(ctx: Any, clock: Clock, deliverer: Deliverer) -> list[timedelta]:
    """Sweep at each delivery's next attempt until none is pending; the waits between attempts."""
    waits = []
    while True:
        notifications.deliver_due_webhooks(ctx, deliverer)
        pending = [row for row in _deliveries_of(ctx) if row[1] == "pending"]
        if not pending:
            return waits
        due = min(row[4] for row in pending)
        waits.append(due - clock.now)
        clock.to(due)


def _deliveries_of(ctx: Any) -> list[Any]:
    with ctx.engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT event_id, status, attempts, last_status_code, next_attempt_at FROM webhook_deliveries"
        )).all())


def test_a_failing_receiver_is_retried_with_growing_waits_until_it_answers(api, runtime, receiver):
    answers = iter([500, 500, 503, 200])
    receiver.answer = lambda: next(answers)
    clock = Clock()
    ctx = dataclasses.replace(runtime.context, clock=clock)
    register(api, receiver.url, ["booking.cancelled"])
    _move(runtime, _booking(api, runtime, 1), S.CANCELLED, at=clock.now)

    waits = _sweep_until_done(ctx, clock, _deliverer())

    # jitter 0.5: three quarters of 10 s, 20 s, 40 s
    assert waits == [timedelta(seconds=7.5), timedelta(seconds=15), timedelta(seconds=30)]
    assert [r.answered for r in receiver.received] == [500, 500, 503, 200]
    assert len({json.loads(r.body)["id"] for r in receiver.received}) == 1  # the same event every time
    [(_, status, attempts, code, _)] = _deliveries_of(ctx)
    assert (status, attempts, code) == ("succeeded", 4, 200)


def test_a_receiver_down_for_an_hour_gets_every_event_once_when_it_is_back(api, runtime, receiver):
    clock = Clock()
    ctx = dataclasses.replace(runtime.context, clock=clock)
    up_at = clock.now + timedelta(hours=1)
    receiver.answer = lambda: 200 if clock.now >= up_at else 503
    register(api, receiver.url, ["*"])
    booking_ids = [_booking(api, runtime, seat) for seat in range(2, 6)]
    for booking_id in booking_ids:
        _move(runtime, booking_id, S.AWAITING_PAYMENT, S.AUTHORIZED, S.CANCELLED, at=clock.now)

    _sweep_until_done(ctx, clock, _deliverer())

    delivered = Counter(json.loads(r.body)["id"] for r in receiver.received if r.answered == 200)
    with runtime.engine.connect() as conn:
        events = set(conn.execute(text("SELECT id FROM notification_events")).scalars())
    assert len(events) == 8 and set(delivered) == events
    assert set(delivered.values()) == {1}
    assert all(r.answered == 503 for r in receiver.received[: len(receiver.received) - 8])


def test_a_delivery_that_never_succeeds_is_failed_after_three_days(api, runtime, receiver):
    receiver.answer = lambda: 500
    clock = Clock()
    ctx = dataclasses.replace(runtime.context, clock=clock)
    started = clock.now
    register(api, receiver.url, ["booking.rejected"])
    _move(runtime, _booking(api, runtime, 6), S.REJECTED, at=clock.now)

    waits = _sweep_until_done(ctx, clock, _deliverer())

    [(_, status, attempts, code, _)] = _deliveries_of(ctx)
    assert (status, code) == ("failed", 500)
    assert attempts == len(waits) + 1 and max(waits) == timedelta(hours=4.5)  # 6 h cap, jitter 0.5
    assert timedelta(days=3) <= clock.now - started < timedelta(days=3, hours=6)
    with transaction(ctx.sessions) as session:
        _, operator_key = create_client(session, "monitoring", operator=True)
    answer = api.app.simulate_get("/metrics", headers={"Authorization": f"Bearer {operator_key}"})
    assert 'webhook_deliveries{status="failed"} 1.0' in answer.text


def test_a_receiver_that_does_not_answer_in_time_is_retried(api, runtime, receiver):
    receiver.answer = lambda: None  # stalls
    register(api, receiver.url, ["booking.rejected"])
    _move(runtime, _booking(api, runtime, 7), S.REJECTED)

    notifications.deliver_due_webhooks(runtime.context, _deliverer(timeout=0.5))

    [(_, status, attempts, code, _)] = _deliveries(runtime)
    assert (status, attempts, code) == ("pending", 1, None)
    with runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT last_error FROM webhook_deliveries")).scalar_one() == "timeout"


@pytest.mark.parametrize("isolated", [
    pytest.param(True, id="one sweep per worker, posting on its own pool"),
    pytest.param(False, id="control: each delivery on a worker thread", marks=pytest.mark.control),
])
def test_a_stalled_receiver_does_not_slow_bookings(api, runtime, worker, receiver, monkeypatch, isolated):
    """Eight stalled deliveries and eight ticks of the scheduler: a sweep holds one of the worker's
    eight threads and the bookings keep the rest. The control switches the isolation off: each
    tick delivers one event on the worker thread that runs it (as a message per delivery would),
    no sweep stepping aside for the one already running, and the bookings wait out the stalls."""
    if not isolated:
        monkeypatch.setattr(notifications, "BATCH", 1)
        monkeypatch.setattr(notifications, "deliver_due_webhooks", notifications._deliver_batch)
    receiver.answer = lambda: None  # accepts, never answers: each POST waits out the 10 s timeout
    for _ in range(2):
        register(api, receiver.url, ["*"])
    event_id, seats = first_event(runtime.context.sessions)
    first = [api.book(seat_request(event_id, [seat])).json["id"] for seat in seats[10:14]]
    wait_for_statuses(runtime.context.sessions, first, {"authorized"})
    for _ in range(worker.worker_threads):  # the scheduler's ticks while the receiver stalls
        runtime.actors["deliver_due_webhooks"].send()
    # Eight deliveries (four bookings, two endpoints) stall at once: in one sweep, or in eight.
    wait_for(lambda: len(receiver.received) == 0 and _attempted_posts(receiver) == 8, what="eight stalled POSTs")

    started = time.monotonic()
    later = [api.book(seat_request(event_id, [seat])).json["id"] for seat in seats[14:30]]
    wait_for_statuses(runtime.context.sessions, later, {"authorized"}, timeout=60)
    waited = time.monotonic() - started
    if isolated:
        assert waited < 8  # well inside the 10 s a stalled POST takes
    else:
        assert waited >= 8  # every worker thread waited on a stalled POST


def _attempted_posts(receiver: Receiver) -> int:
    return receiver.stalled


def test_a_delivery_counts_its_attempts_and_times_its_success_from_the_event(api, runtime, receiver):
    answers = iter([503, 200])
    receiver.answer = lambda: next(answers)
    clock = Clock()
    ctx = dataclasses.replace(runtime.context, clock=clock)
    registry = CollectorRegistry()
    deliverer = dataclasses.replace(_deliverer(), observe=DeliveryMetrics(registry))
    register(api, receiver.url, ["booking.cancelled"])
    _move(runtime, _booking(api, runtime, 8), S.CANCELLED, at=clock.now)
    clock.advance(timedelta(seconds=2))  # the scheduler's tick

    waits = _sweep_until_done(ctx, clock, deliverer)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"type": "booking.cancelled", **labels})

    assert waits == [timedelta(seconds=7.5)]
    assert sample("webhook_delivery_attempts_total", outcome="retried") == 1
    assert sample("webhook_delivery_attempts_total", outcome="succeeded") == 1
    assert sample("webhook_delivery_latency_seconds_count") == 1
    assert sample("webhook_delivery_latency_seconds_sum") == 9.5  # 2 s to the first attempt, 7.5 s to the next
    assert sample("webhook_delivery_latency_seconds_bucket", le="5.0") == 0
    assert sample("webhook_delivery_latency_seconds_bucket", le="10.0") == 1
