"""Reading and writing bookings, their items, payments and history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from db.models import Booking, BookingItem, BookingTransition, Event, Payment, Seat
from domain.lifecycle import BookingStatus, check_transition
from domain.payments import CaptureMode, PaymentMode, PaymentStatus, PaymentStep
from domain.workflow import BookingSnapshot


def lock_booking(session: Session, booking_id: uuid.UUID) -> tuple[Booking, Payment] | None:
    """Lock the booking and its payment, always in this order (booking first)."""
    booking = session.scalars(
        select(Booking).where(Booking.id == booking_id).with_for_update()
    ).one_or_none()
    if booking is None:
        return None
    payment = session.scalars(
        select(Payment).where(Payment.booking_id == booking_id).with_for_update()
    ).one()
    return booking, payment


def snapshot(booking: Booking, payment: Payment) -> BookingSnapshot:
    return BookingSnapshot(
        status=BookingStatus(booking.status),
        payment_mode=PaymentMode(booking.payment_mode),
        capture_mode=CaptureMode(booking.capture_mode),
        has_payment_method=booking.payment_method is not None,
        payment_status=PaymentStatus(payment.status),
        pending_step=PaymentStep(payment.step) if payment.step else None,
        expires_at=booking.expires_at,
        confirm_requested=booking.confirm_requested_at is not None,
        cancel_requested=booking.cancel_requested_at is not None,
        amount_captured=payment.amount_captured,
        amount_refunded=payment.amount_refunded,
        has_provider_payment=payment.intent_id is not None or payment.checkout_session_id is not None,
    )


def move_booking(
    session: Session, booking: Booking, target: BookingStatus, now: datetime, reason: str | None = None
) -> None:
    """Change status as the lifecycle allows, and record the transition in the history."""
    current = BookingStatus(booking.status)
    check_transition(current, target)
    booking.status = target.value
    booking.updated_at = now
    if reason is not None:
        booking.reason = reason
    session.add(
        BookingTransition(
            booking_id=booking.id, from_status=current.value, to_status=target.value,
            reason=reason, at=now,
        )
    )


def items_of(session: Session, booking_id: uuid.UUID) -> Sequence[BookingItem]:
    return session.scalars(
        select(BookingItem).where(BookingItem.booking_id == booking_id).order_by(BookingItem.id)
    ).all()


def set_claims(session: Session, booking_id: uuid.UUID, holds: bool) -> None:
    session.execute(
        update(BookingItem).where(BookingItem.booking_id == booking_id).values(holds_inventory=holds)
    )


def starts_at_of(session: Session, booking: Booking) -> datetime:
    """When the booked event or time slot begins (what the refund policy counts back from)."""
    if booking.event_id is not None:
        return session.scalars(select(Event.starts_at).where(Event.id == booking.event_id)).one()
    (item,) = items_of(session, booking.id)
    assert item.period is not None
    return item.period.lower


@dataclass(frozen=True)
class BookingView:
    booking: Booking
    items: Sequence[BookingItem]
    payment: Payment
    history: Sequence[BookingTransition]
    seats: dict[uuid.UUID, Seat]


def view_booking(session: Session, booking_id: uuid.UUID, client_id: uuid.UUID) -> BookingView | None:
    """A client's booking with everything its representation shows; another client's is None."""
    booking = session.scalars(
        select(Booking).where(Booking.id == booking_id, Booking.client_id == client_id)
    ).one_or_none()
    if booking is None:
        return None
    return _view(session, booking)


def _view(session: Session, booking: Booking) -> BookingView:
    payment = session.get_one(Payment, booking.id)
    history = session.scalars(
        select(BookingTransition)
        .where(BookingTransition.booking_id == booking.id)
        .order_by(BookingTransition.at, BookingTransition.id)
    ).all()
    items = items_of(session, booking.id)
    seat_ids = [item.seat_id for item in items if item.seat_id is not None]
    seats = (
        {seat.id: seat for seat in session.scalars(select(Seat).where(Seat.id.in_(seat_ids)))}
        if seat_ids else {}
    )
    return BookingView(booking, items, payment, history, seats)


def list_bookings(
    session: Session,
    client_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[BookingView]:
    """Newest first; `after` is the (created_at, id) of the last booking of the previous page."""
    query = select(Booking).where(Booking.client_id == client_id)
    if status is not None:
        query = query.where(Booking.status == status)
    if after is not None:
        created_at, last_id = after
        query = query.where(
            or_(
                Booking.created_at < created_at,
                and_(Booking.created_at == created_at, Booking.id < last_id),
            )
        )
    query = query.order_by(Booking.created_at.desc(), Booking.id.desc()).limit(limit)
    return [_view(session, booking) for booking in session.scalars(query).all()]


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Booking.status, func.count()).group_by(Booking.status)).all()
    return {status: count for status, count in rows}
