"""Periodic work: expire holds, finish stuck bookings, purge old idempotency keys.

Each job is safe to run twice at once: it only picks candidates, and every booking is then
moved by `advance_booking`, which locks it and checks again what it needs.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import or_, select

from db.engine import transaction
from db.models import Booking, Payment
from domain.errors import DomainError
from domain.lifecycle import EXPIRABLE, FINAL, BookingStatus
from services.advance import advance_booking
from services.context import Context
from services.idempotency import purge_expired_keys
from services.payment_steps import StepInProgress

log = logging.getLogger(__name__)


def expire_due_bookings(ctx: Context, *, batch_size: int = 500) -> int:
    """Expire bookings whose hold ran out; their Stripe authorization is voided after commit."""
    now = ctx.clock()
    with ctx.sessions() as session:
        due = session.scalars(
            select(Booking.id)
            .where(Booking.status.in_([s.value for s in EXPIRABLE]), Booking.expires_at <= now)
            .where(Booking.confirm_requested_at.is_(None))
            .order_by(Booking.expires_at)
            .limit(batch_size)
        ).all()
    return _advance_each(ctx, due)


def reconcile_stuck_bookings(ctx: Context, *, older_than: timedelta, batch_size: int = 500) -> int:
    """Finish bookings whose message was lost or whose worker died mid-step.

    Candidates: a provider step claimed longer ago than `older_than`, or a request (placement,
    confirm, cancel) recorded that long ago and not yet carried out.
    """
    cutoff = ctx.clock() - older_than
    waiting = [BookingStatus.REQUESTED.value]
    with ctx.sessions() as session:
        stuck = session.scalars(
            select(Booking.id)
            .join(Payment, Payment.booking_id == Booking.id)
            .where(Booking.updated_at < cutoff)
            .where(or_(
                Payment.step.is_not(None),
                Booking.status.in_(waiting),
                (Booking.confirm_requested_at.is_not(None)) & (Booking.status == BookingStatus.AUTHORIZED.value),
                (Booking.cancel_requested_at.is_not(None)) & Booking.status.not_in([s.value for s in FINAL]),
            ))
            .order_by(Booking.updated_at)
            .limit(batch_size)
        ).all()
    return _advance_each(ctx, stuck)


def _advance_each(ctx: Context, booking_ids: list[uuid.UUID] | tuple[uuid.UUID, ...]) -> int:
    moved = 0
    for booking_id in booking_ids:
        try:
            advance_booking(ctx, booking_id)
            moved += 1
        except StepInProgress:
            continue
        except DomainError:
            # One booking's provider trouble must not stop the sweep; the next run retries it.
            log.warning("booking %s could not be advanced", booking_id, exc_info=True)
    return moved


def purge_idempotency_keys(ctx: Context) -> int:
    with transaction(ctx.sessions) as session:
        return purge_expired_keys(session, ctx.clock() - ctx.settings.idempotency_key_ttl)


