"""Who holds what: the claims a placement must respect, and the holds that have lapsed.

A hold has lapsed once its `expires_at` has passed while the booking waits for nothing else
(no confirm or cancel accepted, no provider step pending): what the expiry sweep would expire
(`domain.workflow.next_step` decides it again under the booking's lock). From `expires_at` on,
its seat, slot or places are shown free, and a placement that needs them expires it at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    UUID,
    ColumnElement,
    FromClause,
    Table,
    and_,
    any_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session

from db.driver import DriverStatement
from db.models import BlockedSeat, Booking, BookingItem, Event, Payment, Seat
from domain.availability import Interval
from domain.lifecycle import EXPIRABLE, BookingStatus
from domain.sales import Places

_BOOKINGS: Table = Booking.__table__
_PAYMENTS: Table = Payment.__table__


def lapsed(
    now: datetime | ColumnElement[datetime], booking: FromClause = _BOOKINGS, payment: FromClause = _PAYMENTS
) -> ColumnElement[bool]:
    """Over a booking's row and its payment's: its hold has lapsed at `now`."""
    return and_(
        # Inline constants, not bound values: db.driver's statements take only named parameters.
        or_(*(booking.c.status == literal_column(f"'{status.value}'") for status in sorted(EXPIRABLE))),
        booking.c.expires_at.is_not(None), booking.c.expires_at <= now,
        booking.c.confirm_requested_at.is_(None), booking.c.cancel_requested_at.is_(None),
        payment.c.step.is_(None),
    )


def _claims(now: datetime):  # type: ignore[no-untyped-def]
    return (
        select(BookingItem, lapsed(now).label("lapsed"))
        .join(Booking, Booking.id == BookingItem.booking_id)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(BookingItem.holds_inventory)
    )


@dataclass(frozen=True)
class Holder:
    booking_id: uuid.UUID
    lapsed: bool


_ITEMS: Table = BookingItem.__table__
_SEAT_IDS = bindparam("seat_ids", type_=ARRAY(UUID))

# Placement runs these on every booking: statements of the driver, whose rows cost little Python.
_SEAT_HOLDERS = DriverStatement(
    select(_ITEMS.c.booking_id, lapsed(bindparam("now")))
    .join(_BOOKINGS, _BOOKINGS.c.id == _ITEMS.c.booking_id)
    .join(_PAYMENTS, _PAYMENTS.c.booking_id == _ITEMS.c.booking_id)
    .where(_ITEMS.c.holds_inventory, _ITEMS.c.event_id == bindparam("event_id"), _ITEMS.c.seat_id == any_(_SEAT_IDS))
)
_BLOCKED = BlockedSeat.__table__
_SEATS: Table = Seat.__table__
_SEATS_NOT_FOR_SALE = DriverStatement(
    select(_BLOCKED.c.seat_id)
    .where(_BLOCKED.c.event_id == bindparam("event_id"), _BLOCKED.c.seat_id == any_(_SEAT_IDS))
    .union(select(_SEATS.c.id).where(_SEATS.c.id == any_(_SEAT_IDS), _SEATS.c.retired_at.is_not(None)))
)


def seat_holders(
    session: Session, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID], now: datetime
) -> list[Holder]:
    """The bookings that claim any of the seats at the event."""
    rows = _SEAT_HOLDERS.rows(session.connection(), {"event_id": event_id, "seat_ids": list(seat_ids), "now": now})
    return [Holder(booking_id, is_lapsed) for booking_id, is_lapsed in rows]


def slot_holders(
    session: Session, resource_id: uuid.UUID, around: Interval, now: datetime
) -> list[tuple[Holder, Interval]]:
    """The bookings that claim time of the resource overlapping `around`, with their periods."""
    from db.queries.catalog import slot_range

    query = _claims(now).where(
        BookingItem.resource_id == resource_id, BookingItem.period.overlaps(slot_range(around.starts_at, around.ends_at))
    )
    return [
        (Holder(item.booking_id, is_lapsed), Interval(item.period.lower, item.period.upper))
        for item, is_lapsed in session.execute(query)
    ]


def seats_not_for_sale(session: Session, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The seats among `seat_ids` blocked at the event, or retired from their venue's layout."""
    rows = _SEATS_NOT_FOR_SALE.rows(session.connection(), {"event_id": event_id, "seat_ids": list(seat_ids)})
    return [seat_id for (seat_id,) in rows]


def places_of(session: Session, event_ids: Sequence[uuid.UUID], now: datetime) -> dict[uuid.UUID, Places]:
    """Capacity, live holds and sales of general-admission events; a lapsed hold counts as free."""
    quantity = BookingItem.quantity
    confirmed = Booking.status == BookingStatus.CONFIRMED.value
    claims = (
        select(
            BookingItem.event_id,
            func.sum(case((and_(~confirmed, ~lapsed(now)), quantity), else_=0)).label("held"),
            func.sum(case((confirmed, quantity), else_=0)).label("sold"),
            func.sum(case((lapsed(now), quantity), else_=0)).label("lapsed"),
        )
        .join(Booking, Booking.id == BookingItem.booking_id)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(BookingItem.event_id.in_(event_ids), BookingItem.seat_id.is_(None), BookingItem.holds_inventory)
        .group_by(BookingItem.event_id)
        .subquery()
    )
    rows = session.execute(
        select(Event.id, Event.capacity, claims.c.held, claims.c.sold, claims.c.lapsed)
        .outerjoin(claims, claims.c.event_id == Event.id)
        .where(Event.id.in_(event_ids), Event.capacity.is_not(None))
    )
    return {
        event_id: Places(capacity, int(held or 0), int(sold or 0), int(gone or 0))
        for event_id, capacity, held, sold, gone in rows
    }


def lapsed_general_holders(
    session: Session, event_id: uuid.UUID, now: datetime, limit: int
) -> list[tuple[uuid.UUID, int]]:
    """Bookings holding places at the event whose hold has lapsed, with how many places, the
    longest lapsed first."""
    query = (
        select(Booking.id, BookingItem.quantity)
        .join(BookingItem, BookingItem.booking_id == Booking.id)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(BookingItem.event_id == event_id, BookingItem.seat_id.is_(None), BookingItem.holds_inventory,
               lapsed(now))
        .order_by(Booking.expires_at, Booking.id)
        .limit(limit)
    )
    return [(booking_id, quantity) for booking_id, quantity in session.execute(query)]
