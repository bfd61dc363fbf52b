"""Periodic work: finish stuck bookings, guard old authorizations, archive, purge keys.

Expiry, the busiest of them, has its own module (`services.expiry`).

Each job is safe to run twice at once: it only picks candidates, and every booking is then
moved by `advance_booking`, which locks it and checks again what it needs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import or_, select

from db.archive import archive_batch
from db.engine import transaction
from db.models import Booking, Event, Payment
from db.unit_of_work import UnitOfWork
from domain.errors import DomainError
from domain.lifecycle import FINAL, BookingStatus
from domain.payments import PaymentStatus
from services import event_cancellation
from services.advance import advance_booking
from services.context import Context
from services.idempotency import purge_expired_keys
from services.payment_steps import StepInProgress

log = logging.getLogger(__name__)


def reconcile_stuck_bookings(ctx: Context, *, older_than: timedelta, batch_size: int = 500) -> int:
    """Finish bookings whose message was lost or whose worker died mid-step.

    Candidates: a provider step claimed longer ago than `older_than`, a request (placement,
    confirm, cancel, an operator's refund) recorded that long ago and not yet carried out, or a
    booking that ended unsold and still holds the customer's money.
    """
    _finish_event_cancellations(ctx)
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
                # Not those whose refund waits for a dispute: its webhook moves them on.
                (Booking.cancel_requested_at.is_not(None)) & Booking.status.not_in([s.value for s in FINAL])
                & ~event_cancellation.refund_held_by_dispute(),
                (Payment.refund_requested > Payment.amount_refunded) & (Booking.status == BookingStatus.CONFIRMED.value)
                & ~event_cancellation.refund_held_by_dispute(),
                # Ended unsold with the customer's money still taken (paid late, captured in the
                # dashboard): it goes back in full.
                (Payment.amount_captured > Payment.amount_refunded)
                & Booking.status.in_([s.value for s in FINAL if s is not BookingStatus.REFUNDED]),
            ))
            # Least recently tried first: every attempt touches the payment (a claim, or its
            # release after a failure), so bookings that keep failing cannot hold the batch.
            .order_by(Payment.updated_at, Booking.updated_at)
            .limit(batch_size)
        ).all()
    return _advance_each(ctx, stuck)


def _finish_event_cancellations(ctx: Context) -> None:
    """Cancelled events whose fan-out left live bookings behind (its message lost or dead)."""
    with ctx.sessions() as session:
        events = session.scalars(
            select(Booking.event_id).join(Event, Event.id == Booking.event_id)
            .where(Event.status == "cancelled", Booking.cancel_requested_at.is_(None))
            .where(Booking.status.not_in([s.value for s in FINAL]))
            .distinct()
        ).all()
    for event_id in events:
        if event_id is not None:
            event_cancellation.cancel_event_bookings(ctx, event_id)


def _advance_each(ctx: Context, booking_ids: Sequence[uuid.UUID]) -> int:
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
        except Exception:
            # Nor one booking's bug: it is logged for an operator, and the others still move.
            log.exception("booking %s failed to advance", booking_id)
    return moved


def guard_old_authorizations(ctx: Context, *, batch_size: int = 500) -> int:
    """Act on card holds before Stripe voids them (7 days): cancel or capture, per settings."""
    now = ctx.clock()
    cutoff = now - ctx.settings.authorization_guard_after
    with ctx.sessions() as session:
        old = session.scalars(
            select(Payment.booking_id)
            .join(Booking, Booking.id == Payment.booking_id)
            .where(Payment.status == PaymentStatus.AUTHORIZED.value, Payment.authorized_at < cutoff)
            # A confirm accepted wins, as over an expiry: its capture is reconciliation's to finish.
            .where(Booking.confirm_requested_at.is_(None))
            .order_by(Payment.authorized_at)
            .limit(batch_size)
        ).all()
    for booking_id in old:
        with UnitOfWork(ctx.sessions) as uow:
            locked = uow.lock(booking_id)
            # Confirmed since the query (advancing it below captures), or moved on: left alone.
            if locked is None or locked.status is not BookingStatus.AUTHORIZED:
                continue
            if locked.booking.confirm_requested_at is not None:
                continue
            if ctx.settings.authorization_guard_action == "capture":
                locked.booking.confirm_requested_at = now
            else:
                locked.move(BookingStatus.EXPIRED, now, reason="authorization_expiring")
            uow.commit()
    return _advance_each(ctx, old)


def archive_terminal_bookings(ctx: Context, *, batch_size: int = 1000, max_batches: int = 1000) -> int:
    """Move terminal bookings older than ARCHIVE_AFTER_DAYS out of the hot tables, in batches."""
    now = ctx.clock()
    moved = 0
    for _ in range(max_batches):
        with transaction(ctx.sessions) as session:
            count = archive_batch(
                session, updated_before=now - ctx.settings.archive_after, batch_size=batch_size, now=now
            )
        moved += count
        if count < batch_size:
            break
    return moved


def purge_idempotency_keys(ctx: Context) -> int:
    with transaction(ctx.sessions) as session:
        return purge_expired_keys(session, ctx.clock() - ctx.settings.idempotency_key_ttl)


