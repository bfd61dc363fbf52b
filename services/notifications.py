"""Delivering webhook events: claim what is due, POST it signed, record how it went.

Deliveries are rows with a `next_attempt_at`, swept every few seconds, rather than Dramatiq
retries: the schedule runs for three days (Dramatiq's backoff is capped and lives in Redis), the
client's delivery log and the operators need attempts, last status and next attempt in SQL,
a client can ask for a retry by setting one column, and nothing is lost if Redis is.

A sweep runs on the `notifications` queue and holds one worker thread however slow the receivers
are: it POSTs a batch in parallel on its own small thread pool, and a second sweep arriving in
the same process while one runs returns at once. Bookings keep the other worker threads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from adapters.webhooks import Answer, WebhookSender
from db.archive import archived_view
from db.engine import transaction
from db.models import Booking, Payment
from db.queries.bookings import view_of
from db.queries.notifications import (
    DueDelivery,
    claim_due_deliveries,
    record_delivery_attempt,
    store_event_data,
)
from domain.notifications import DeliveryStatus, RetrySchedule, signature_header
from services.context import Context
from services.representation import booking_body

log = logging.getLogger(__name__)

#: A claimed batch must be done within this, or another sweep takes it again (at most
#: `BATCH / PARALLEL` rounds of the 10 s timeout, plus DNS).
CLAIM_LEASE = timedelta(minutes=2)
BATCH = 32
PARALLEL = 8
#: A sweep stops taking new batches after this long, and leaves the rest to the next tick.
SWEEP_BUDGET_SECONDS = 20.0


@dataclass
class Deliverer:
    """What delivering needs besides the context: one per worker process."""

    sender: WebhookSender
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    jitter: Callable[[], float] = random.random
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(PARALLEL, "webhook"))
    running: threading.Lock = field(default_factory=threading.Lock)
    #: Told of each attempt: the event's type, the outcome, and the time since the event (metrics).
    observe: Callable[[str, DeliveryStatus, timedelta], None] = lambda event_type, status, since_event: None


def deliver_due_webhooks(ctx: Context, deliverer: Deliverer) -> int:
    """Deliver what is due, batch after batch, within the sweep's budget; the number attempted."""
    if not deliverer.running.acquire(blocking=False):
        return 0  # this process is sweeping already
    try:
        attempted, started = 0, time.monotonic()
        while time.monotonic() - started < SWEEP_BUDGET_SECONDS:
            done = _deliver_batch(ctx, deliverer)
            attempted += done
            if done < BATCH:
                break
        return attempted
    finally:
        deliverer.running.release()


def _deliver_batch(ctx: Context, deliverer: Deliverer) -> int:
    now = ctx.clock()
    with transaction(ctx.sessions) as session:
        due = claim_due_deliveries(session, now, now + CLAIM_LEASE, BATCH)
    answers = list(deliverer.pool.map(lambda delivery: _post(ctx, deliverer.sender, delivery), due))
    now = ctx.clock()
    recorded = []
    with transaction(ctx.sessions) as session:
        for delivery, answer in zip(due, answers, strict=True):
            next_at = deliverer.schedule.next_attempt(delivery.attempts + 1, now, delivery.event_created_at,
                                                      deliverer.jitter())
            status = DeliveryStatus.SUCCEEDED if answer.ok else DeliveryStatus.PENDING if next_at else DeliveryStatus.FAILED
            if record_delivery_attempt(
                session, delivery, status=status.value, status_code=answer.status_code, error=answer.error,
                next_attempt_at=next_at if status is DeliveryStatus.PENDING and next_at else now, now=now,
            ):
                recorded.append((delivery, status))
            _log_outcome(delivery, answer, status)
    for delivery, status in recorded:  # committed, and not counted by a sweep that took over
        deliverer.observe(delivery.type, status, now - delivery.event_created_at)
    return len(due)


def _post(ctx: Context, sender: WebhookSender, delivery: DueDelivery) -> Answer:
    try:
        body = event_body(ctx, delivery)
    except Exception:
        log.exception("could not render event %s", delivery.event_id)
        return Answer(None, "the event could not be rendered")
    timestamp = int(ctx.clock().timestamp())
    return sender.post(delivery.url, body, {"Bookings-Signature": signature_header(delivery.secret, body, timestamp)})


def event_body(ctx: Context, delivery: DueDelivery) -> bytes:
    """The delivery's JSON. Its `data` is rendered at the event's first delivery and kept, so
    every delivery of one event id carries the same booking."""
    data = delivery.data
    if data is None:
        with transaction(ctx.sessions) as session:
            data = store_event_data(session, delivery.event_id, {"booking": _booking(session, delivery)})
    return orjson.dumps({
        "id": delivery.event_id, "type": delivery.type,
        "created": int(delivery.event_created_at.timestamp()), "data": data,
    })


def _booking(session: Any, delivery: DueDelivery) -> dict[str, Any]:
    booking, payment = session.get(Booking, delivery.booking_id), session.get(Payment, delivery.booking_id)
    if booking is not None and payment is not None:
        return booking_body(view_of(session, booking, payment))
    archived = archived_view(session, delivery.booking_id, delivery.client_id)
    return booking_body(archived) if archived is not None else {"id": str(delivery.booking_id)}


def _log_outcome(delivery: DueDelivery, answer: Answer, status: DeliveryStatus) -> None:
    if status is DeliveryStatus.SUCCEEDED:
        log.info("webhook %s delivered", delivery.event_id, extra={"delivery_id": str(delivery.id)})
    else:
        level = logging.WARNING if status is DeliveryStatus.FAILED else logging.INFO
        log.log(level, "webhook %s %s: %s", delivery.event_id,
                "failed for good" if status is DeliveryStatus.FAILED else "will be retried",
                answer.error or answer.status_code, extra={"delivery_id": str(delivery.id)})

