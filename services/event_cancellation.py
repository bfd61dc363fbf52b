"""Cancelling an event: no new bookings, and every live one cancelled and refunded in full.

The request only marks the event cancelled and stages one fan-out message. The fan-out locks the
event's live bookings a batch per transaction (`SKIP LOCKED`: a booking a worker holds is taken on
the next pass), records an operator's cancel with a full refund on each, and stages one cancel
message per booking through the outbox; the usual workers then void or refund each one, under
Stripe's own retries and backoff. Run again (a second cancel call, a redelivery, reconciliation),
it only takes what is left, so nothing is done twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from db.models import Booking, Event, Payment
from db.unit_of_work import UnitOfWork
from domain.errors import NotFound
from domain.lifecycle import FINAL
from domain.payments import DISPUTES_ALLOWING_REFUNDS, RefundChoice
from domain.workflow import VOIDABLE
from services import queues
from services.context import Context
from services.outbox import StagedMessage, stage
from services.requests import accept_cancel

#: Why a booking of a cancelled event ended.
EVENT_CANCELLED = "event_cancelled"

#: Bookings cancelled per transaction of the fan-out.
BATCH_SIZE = 200

_LIVE = [status.value for status in FINAL]
_HELD_AT_STRIPE = sorted(status.value for status in VOIDABLE)


def cancel_event(uow: UnitOfWork, event_id: uuid.UUID, *, request_id: str | None) -> list[StagedMessage]:
    """Mark the event cancelled (placement and the API refuse it from now on) and stage its fan-out."""
    event = uow.session.get(Event, event_id, with_for_update={"key_share": True})
    if event is None:
        raise NotFound("no such event")
    event.status = "cancelled"
    return [stage(uow.session, *queues.CANCEL_EVENT_BOOKINGS, str(event_id), request_id=request_id)]


def cancel_event_bookings(ctx: Context, event_id: uuid.UUID) -> int:
    """Cancel the event's live bookings a batch at a time; returns how many are left (taken by
    others meanwhile: a later pass takes them)."""
    while True:
        now = ctx.clock()
        with UnitOfWork(ctx.sessions) as uow:
            batch = uow.lock_where(
                Booking.event_id == event_id, Booking.status.not_in(_LIVE), Booking.cancel_requested_at.is_(None),
                limit=BATCH_SIZE,
            )
            messages = [
                accept_cancel(uow, locked, RefundChoice.FULL, EVENT_CANCELLED, now=now,
                              refund_policy=ctx.settings.refund_policy, request_id=None)
                for locked in batch
            ]
            uow.commit()
        ctx.dispatch(messages)
        if len(batch) < BATCH_SIZE:
            break
    with ctx.sessions() as session:
        return _uncancelled(session, event_id)


def _uncancelled(session: Session, event_id: uuid.UUID) -> int:
    return int(session.scalar(
        select(func.count()).select_from(Booking)
        .where(Booking.event_id == event_id, Booking.status.not_in(_LIVE), Booking.cancel_requested_at.is_(None))
    ) or 0)


def refund_held_by_dispute() -> ColumnElement[bool]:
    """A refund asked for that waits for the charge's dispute (Stripe refuses it meanwhile)."""
    return and_(
        Payment.refund_requested > Payment.amount_refunded, Payment.dispute.is_not(None),
        Payment.dispute["status"].astext.not_in(sorted(DISPUTES_ALLOWING_REFUNDS)),
    )


@dataclass(frozen=True)
class Progress:
    bookings: int
    done: int
    failed: int


def progress(session: Session, event_id: uuid.UUID, *, now: datetime, stuck_after: float) -> Progress:
    """The event's cancelled bookings, those settled (final, and nothing left to do at Stripe),
    and those that failed: their Stripe step stuck for longer than `stuck_after` seconds (an
    operator should look: dead letters, the console), or their refund refused while a dispute
    holds the money (the booking shows `refund_blocked`; the dispute's end settles it)."""
    of_event = (Booking.event_id == event_id) & (Booking.cancel_reason == EVENT_CANCELLED)
    # Settled at Stripe too: a cancelled booking's authorization is voided after its status moves.
    settled = Booking.status.in_(_LIVE) & Payment.step.is_(None) & Payment.status.not_in(_HELD_AT_STRIPE)
    step_stuck = Payment.step.is_not(None) & (
        Payment.step_started_at.is_(None) | (func.extract("epoch", now - Payment.step_started_at) > stuck_after)
    )
    stuck = ~settled & (step_stuck | refund_held_by_dispute())
    row = session.execute(
        select(func.count(), func.count().filter(settled), func.count().filter(stuck))
        .select_from(Booking).join(Payment, Payment.booking_id == Booking.id).where(of_event)
    ).one()
    live_left = _uncancelled(session, event_id)
    return Progress(bookings=int(row[0]) + live_left, done=int(row[1]), failed=int(row[2]))
