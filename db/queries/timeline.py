"""One booking as operators see it: found by id, email or Stripe id, and its whole story in order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from db.models import Booking, BookingTransition, Event, OutboxMessage, Payment, WebhookEvent
from domain.payments import PaymentStep, idempotency_key


@dataclass(frozen=True)
class BookingRow:
    id: uuid.UUID
    status: str
    customer_email: str
    total_amount: int
    currency: str
    event: str | None
    created_at: datetime


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime | None  # None: the step happened, but when is not recorded
    kind: str  # status, payment, webhook, outbox
    title: str
    detail: str = ""
    key: str = ""  # the idempotency key a provider call was made with


@dataclass(frozen=True)
class BookingTimeline:
    booking: dict[str, Any]
    payment: dict[str, Any] | None
    event: str | None
    entries: list[TimelineEntry]


def find_bookings(session: Session, q: str, *, limit: int = 50) -> list[BookingRow]:
    """By booking id, PaymentIntent (pi_…) or Checkout Session (cs_…) id, or customer email; the
    newest bookings when `q` is empty. Each lookup is one index scan."""
    query = (select(Booking.id, Booking.status, Booking.customer_email, Booking.total_amount, Booking.currency,
                    Event.name, Booking.created_at)
             .outerjoin(Event, Event.id == Booking.event_id)
             .order_by(Booking.created_at.desc(), Booking.id.desc()).limit(limit))
    q = q.strip()
    if q.startswith(("pi_", "cs_")):
        column = Payment.intent_id if q.startswith("pi_") else Payment.checkout_session_id
        query = query.where(Booking.id == select(Payment.booking_id).where(column == q).scalar_subquery())
    elif "@" in q:
        query = query.where(func.lower(Booking.customer_email) == q.lower())
    elif q:
        try:
            query = query.where(Booking.id == uuid.UUID(q))
        except ValueError:
            return []
    return [BookingRow(*row) for row in session.execute(query)]


def booking_timeline(session: Session, booking_id: uuid.UUID) -> BookingTimeline | None:
    booking = session.get(Booking, booking_id)
    if booking is None:
        return None
    payment = session.get(Payment, booking_id)
    entries = [*_transitions(session, booking_id), *_webhooks(session, booking_id), *_outbox(session, booking_id)]
    if payment is not None:
        entries += _provider_calls(payment)
    entries.sort(key=lambda e: (e.at is None, e.at or datetime.min))
    return BookingTimeline(
        booking=_columns(booking), payment=_columns(payment) if payment else None,
        event=session.scalar(select(Event.name).where(Event.id == booking.event_id)) if booking.event_id else None,
        entries=entries,
    )


def _transitions(session: Session, booking_id: uuid.UUID) -> list[TimelineEntry]:
    rows = session.scalars(select(BookingTransition).where(BookingTransition.booking_id == booking_id))
    return [TimelineEntry(t.at, "status", f"{t.from_status or 'new'} → {t.to_status}", t.reason or "") for t in rows]


def _webhooks(session: Session, booking_id: uuid.UUID) -> list[TimelineEntry]:
    rows = session.scalars(select(WebhookEvent).where(WebhookEvent.booking_id == booking_id))
    return [
        TimelineEntry(e.received_at, "webhook", f"{e.type} · {e.outcome or 'not yet applied'}",
                      " · ".join(filter(None, [e.id, e.note])))
        for e in rows
    ]


def _outbox(session: Session, booking_id: uuid.UUID) -> list[TimelineEntry]:
    # Outbox rows live only until their message has run: these are the pending ones.
    rows = session.scalars(select(OutboxMessage).where(cast(OutboxMessage.args[0].astext, String) == str(booking_id)))
    return [
        TimelineEntry(m.created_at, "outbox", f"{m.actor_name} pending on {m.queue_name}",
                      f"message {m.id}, relayed {m.relay_count}×")
        for m in rows
    ]


def _provider_calls(payment: Payment) -> list[TimelineEntry]:
    """The Stripe calls the payment's counters show were made, each with its idempotency key.

    The payment row keeps only its current step, so the times of earlier calls are not known
    (except the authorization's); the keys are, since each is derived from step and number.
    """
    booking = str(payment.booking_id)
    calls = [TimelineEntry(payment.authorized_at if n == payment.attempt else None, "payment",
                           f"authorize, attempt {n}", payment.intent_id or "",
                           idempotency_key(booking, PaymentStep.AUTHORIZE, n))
             for n in range(1, payment.attempt + 1)]
    if payment.amount_captured:
        calls.append(TimelineEntry(None, "payment", f"capture {payment.amount_captured}", "",
                                   idempotency_key(booking, PaymentStep.CAPTURE, payment.attempt)))
    calls += [TimelineEntry(None, "payment", f"refund {n}", "", idempotency_key(booking, PaymentStep.REFUND, n))
              for n in range(1, payment.refund_number + 1)]
    if payment.step:
        number = payment.refund_number if payment.step == PaymentStep.REFUND else payment.attempt
        calls.append(TimelineEntry(payment.step_started_at, "payment", f"{payment.step} in progress",
                                   "claimed by a worker; not yet answered",
                                   idempotency_key(booking, PaymentStep(payment.step), number)))
    return calls


def _columns(row: Any) -> dict[str, Any]:
    # A client secret lets its holder pay: no page needs it.
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key != "client_secret"}
