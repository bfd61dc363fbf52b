"""Stripe webhooks: append to the ledger on receipt, apply each event once in a worker.

Receiving does no business work: the event is written to the ledger (unique on its id, so a
duplicate delivery is a no-op) with an outbox message in the same transaction. Applying locks
the ledger row, then the booking, asks `domain.webhooks` what the event means for the payment
as it stands now, records the effect and the outcome, and lets `advance_booking` do what
follows (a capture for an immediate booking, a void for a booking that ended meanwhile).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.engine import transaction
from db.models import Booking, Payment, WebhookEvent
from db.queries.bookings import move_booking
from db.queries.locked_bookings import lock_booking
from domain.lifecycle import BookingStatus, RetryHold
from domain.payments import PaymentStatus
from domain.webhooks import Effect, EffectKind, ProviderEvent, effect_of
from services import queues
from services.advance import advance_booking
from services.context import Context
from services.outbox import StagedMessage, stage
from services.placement import release_inventory

log = logging.getLogger(__name__)

EventReader = Callable[[dict[str, Any]], ProviderEvent]


def record_event(session: Session, payload: dict[str, Any]) -> StagedMessage | None:
    """Append the event to the ledger; None when it was already there (a duplicate delivery)."""
    inserted = session.execute(
        insert(WebhookEvent)
        .values(id=str(payload["id"]), type=str(payload["type"]), payload=payload)
        .on_conflict_do_nothing()
        .returning(WebhookEvent.id)
    ).first()
    if inserted is None:
        return None
    return stage(session, *queues.APPLY_WEBHOOK_EVENT, str(payload["id"]))


def process_event(ctx: Context, event_id: str, read: EventReader, *, replay: bool = False) -> str | None:
    """Apply a ledger event once, then move its booking on; returns the outcome (None: no such event).

    Run again (a redelivery, a retry after a busy booking, an operator's replay), the event is
    not applied twice, but the booking is still moved on.
    """
    outcome, booking_id = _apply_once(ctx, event_id, read, replay=replay)
    if booking_id is not None:
        advance_booking(ctx, booking_id)
    return outcome


def _apply_once(
    ctx: Context, event_id: str, read: EventReader, *, replay: bool
) -> tuple[str | None, uuid.UUID | None]:
    now = ctx.clock()
    with transaction(ctx.sessions) as session:
        row = session.scalars(
            select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update(key_share=True)
        ).one_or_none()
        if row is None:
            return None, None
        if row.processed_at is not None and not replay:
            return row.outcome, row.booking_id
        event = read(row.payload)
        booking_id = _find_booking(session, event)
        outcome, note = "unmatched", "no booking has this payment"
        if booking_id is not None:
            outcome, note = _apply(session, booking_id, event, now, ctx.settings.retry_hold)
        row.processed_at, row.booking_id, row.outcome, row.note = now, booking_id, outcome, note
    log.info("webhook %s %s: %s (%s)", event_id, event.type, outcome, note)
    return outcome, booking_id


def _find_booking(session: Session, event: ProviderEvent) -> uuid.UUID | None:
    for column, value in (
        (Payment.intent_id, event.intent_id),
        (Payment.checkout_session_id, event.checkout_session_id),
    ):
        if value:
            found = session.scalars(select(Payment.booking_id).where(column == value)).first()
            if found is not None:
                return found
    try:
        booking_id = uuid.UUID(event.booking_id or "")
    except ValueError:
        return None
    return session.scalars(select(Booking.id).where(Booking.id == booking_id)).first()


def _apply(
    session: Session, booking_id: uuid.UUID, event: ProviderEvent, now: datetime, retry_hold: RetryHold
) -> tuple[str, str | None]:
    locked = lock_booking(session, booking_id)
    assert locked is not None
    booking, payment = locked
    if event.checkout_session_id and payment.checkout_session_id not in (None, event.checkout_session_id):
        # A session made for a retry whose first answer was lost: never shown to anyone.
        return "ignored", "not the booking's checkout session"
    effect = effect_of(
        event, PaymentStatus(payment.status), BookingStatus(booking.status), payment.amount_refunded
    )
    if effect.kind is EffectKind.IGNORED:
        return "ignored", effect.reason
    payment.intent_id = payment.intent_id or event.intent_id
    payment.updated_at = now
    _EFFECTS[effect.kind](session, booking, payment, effect, now, retry_hold)
    return "applied", str(effect.kind)


def _authorized(session: Session, booking: Booking, payment: Payment, effect: Effect, now: datetime, _: RetryHold) -> None:
    payment.status = PaymentStatus.AUTHORIZED.value
    payment.amount_authorized = effect.amount or booking.total_amount
    payment.authorized_at = payment.authorized_at or now
    if booking.status == BookingStatus.AWAITING_PAYMENT:
        move_booking(session, booking, BookingStatus.AUTHORIZED, now)


def _captured(session: Session, booking: Booking, payment: Payment, effect: Effect, now: datetime, _: RetryHold) -> None:
    amount = effect.amount or booking.total_amount
    payment.status = PaymentStatus.CAPTURED.value
    payment.amount_authorized = max(payment.amount_authorized, amount)
    payment.amount_captured = amount
    # As when a worker records a capture: money taken after the client asked to cancel does not
    # confirm the booking; the pending cancel ends it and the money goes back in full.
    if booking.status in (BookingStatus.AWAITING_PAYMENT, BookingStatus.AUTHORIZED) and booking.cancel_requested_at is None:
        move_booking(session, booking, BookingStatus.CONFIRMED, now)


def _failed(session: Session, booking: Booking, payment: Payment, effect: Effect, now: datetime, retry_hold: RetryHold) -> None:
    payment.status = PaymentStatus.FAILED.value
    payment.decline_code = (effect.reason or "")[:60]
    # The customer may try again (another card on the front end): keep the hold a while longer.
    booking.expires_at = retry_hold.extended(booking.expires_at, now, booking.created_at)
    booking.updated_at = now


def _canceled(session: Session, booking: Booking, payment: Payment, effect: Effect, now: datetime, _: RetryHold) -> None:
    payment.status = PaymentStatus.CANCELED.value
    if booking.status in (BookingStatus.AWAITING_PAYMENT, BookingStatus.AUTHORIZED):
        release_inventory(session, booking, BookingStatus.CANCELLED, now=now, reason="payment_canceled")


def _refunded(session: Session, booking: Booking, payment: Payment, effect: Effect, now: datetime, _: RetryHold) -> None:
    payment.amount_refunded = min(effect.amount, payment.amount_captured)
    payment.status = PaymentStatus.REFUNDED.value
    if booking.status == BookingStatus.CONFIRMED and payment.amount_refunded >= payment.amount_captured:
        release_inventory(session, booking, BookingStatus.REFUNDED, now=now, reason="refunded_at_provider")


def _checkout_expired(session: Session, booking: Booking, payment: Payment, effect: Effect, now: datetime, _: RetryHold) -> None:
    payment.status = PaymentStatus.CANCELED.value
    release_inventory(session, booking, BookingStatus.EXPIRED, now=now, reason="checkout_expired")


_EFFECTS = {
    EffectKind.AUTHORIZED: _authorized,
    EffectKind.CAPTURED: _captured,
    EffectKind.FAILED: _failed,
    EffectKind.CANCELED: _canceled,
    EffectKind.REFUNDED: _refunded,
    EffectKind.CHECKOUT_EXPIRED: _checkout_expired,
}
