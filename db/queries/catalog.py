"""Events, seats and time-slot resources: what clients browse and what bookings claim."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ARRAY, UUID, Connection, and_, any_, bindparam, exists, select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.orm import Session

from db.driver import DriverStatement
from db.models import (
    AvailabilityWindow,
    Booking,
    BookingItem,
    Event,
    EventPrice,
    Resource,
    Seat,
    Venue,
)
from domain.availability import Interval
from domain.lifecycle import BookingStatus


@dataclass(frozen=True)
class EventView:
    event: Event
    venue: Venue
    prices: dict[str, int]


def list_events(session: Session) -> list[EventView]:
    rows = session.execute(
        select(Event, Venue).join(Venue, Venue.id == Event.venue_id).order_by(Event.starts_at, Event.id)
    ).all()
    prices = _prices(session, [event.id for event, _ in rows])
    return [EventView(event, venue, prices.get(event.id, {})) for event, venue in rows]


def get_event(session: Session, event_id: uuid.UUID) -> EventView | None:
    row = session.execute(
        select(Event, Venue).join(Venue, Venue.id == Event.venue_id).where(Event.id == event_id)
    ).one_or_none()
    if row is None:
        return None
    event, venue = row
    return EventView(event, venue, _prices(session, [event.id]).get(event.id, {}))


def _prices(session: Session, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    prices: dict[uuid.UUID, dict[str, int]] = {}
    for row in session.scalars(select(EventPrice).where(EventPrice.event_id.in_(event_ids))):
        prices.setdefault(row.event_id, {})[row.tier] = row.amount
    return prices


@dataclass(frozen=True)
class SeatState:
    seat: Seat
    price: int | None
    status: str  # available, held, booked


def seat_map(session: Session, event: EventView) -> list[SeatState]:
    claims = dict(
        session.execute(
            select(BookingItem.seat_id, Booking.status)
            .join(Booking, Booking.id == BookingItem.booking_id)
            .where(BookingItem.event_id == event.event.id, BookingItem.holds_inventory)
        ).all()
    )
    seats = session.scalars(
        select(Seat).where(Seat.venue_id == event.venue.id).order_by(Seat.row, Seat.number)
    ).all()
    return [
        SeatState(seat, event.prices.get(seat.tier), _seat_status(claims.get(seat.id)))
        for seat in seats
    ]


def _seat_status(booking_status: str | None) -> str:
    if booking_status is None:
        return "available"
    return "booked" if booking_status == BookingStatus.CONFIRMED else "held"


@dataclass(frozen=True)
class SeatLabel:
    """What a booking's answer shows of a seat."""

    id: uuid.UUID
    row: str
    number: int
    tier: str


@dataclass(frozen=True)
class PricedSeat:
    seat: SeatLabel
    currency: str
    price: int | None  # None: the event has no price for the seat's tier


_seat, _event, _price = Seat.__table__.c, Event.__table__.c, EventPrice.__table__.c

#: Built once and run by the driver: the accept path runs it on every booking request, and
#: SQLAlchemy's per-execution work costs more Python time than PostgreSQL takes to answer it.
_PRICED_SEATS = DriverStatement(
    select(_seat.id, _seat.row, _seat.number, _seat.tier, _event.currency, _price.amount)
    .select_from(Event.__table__)
    .join(Seat.__table__, _seat.venue_id == _event.venue_id)
    .outerjoin(EventPrice.__table__, (_price.event_id == _event.id) & (_price.tier == _seat.tier))
    .where(_event.id == bindparam("event_id"), _seat.id == any_(bindparam("seat_ids", type_=ARRAY(UUID))))
)


def priced_seats(connection: Connection, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID]) -> list[PricedSeat]:
    """The requested seats at the event's venue with the event's price for each: one query."""
    rows = _PRICED_SEATS.rows(connection, {"event_id": event_id, "seat_ids": list(seat_ids)})
    found = {
        seat_id: PricedSeat(SeatLabel(seat_id, row, number, tier), currency, price)
        for seat_id, row, number, tier, currency, price in rows
    }
    return [found[seat_id] for seat_id in seat_ids if seat_id in found]


def event_exists(connection: Connection, event_id: uuid.UUID) -> bool:
    return connection.scalar(select(_event.id).where(_event.id == event_id)) is not None


_item = BookingItem.__table__.c

_mine, _taken = BookingItem.__table__.alias("mine"), BookingItem.__table__.alias("taken")

_LOCK_SEATS_OF = DriverStatement(
    select(_seat.id)
    .join(BookingItem.__table__, _item.seat_id == _seat.id)
    .where(
        _item.booking_id == bindparam("booking_id"),
        # Uncorrelated, so evaluated once before any row is read: if one of the booking's seats is
        # held by another booking already, no seat is locked at all.
        ~exists().where(
            _mine.c.booking_id == bindparam("booking_id"),
            _taken.c.event_id == _mine.c.event_id, _taken.c.seat_id == _mine.c.seat_id,
            _taken.c.holds_inventory, _taken.c.booking_id != _mine.c.booking_id,
        ),
    )
    .order_by(_seat.id)
    .with_for_update(of=Seat.__table__, key_share=True)
)


def lock_seats_of(session: Session, booking_id: uuid.UUID) -> list[uuid.UUID]:
    """Lock the seats a booking asks for, in id order, so two placements of overlapping seats
    cannot deadlock; returns their ids, or none at all if one of them is already held by another
    booking (a committed claim: the booking can be refused without waiting for any seat's lock,
    which is what most requests of a sold-out seat meet).

    A claim committed while this waited for a lock is not seen here (the check ran before the
    wait): the caller checks again after the locks (`claimed_seats`).

    FOR NO KEY UPDATE, not FOR UPDATE: the lock serializes placements, and it must not conflict
    with the KEY SHARE locks that inserting a booking item takes on its seat (the foreign key
    check), or the API's accept path would wait on the workers (and could deadlock with them).
    """
    return [seat_id for (seat_id,) in _LOCK_SEATS_OF.rows(session.connection(), {"booking_id": booking_id})]


_CLAIMED_SEATS = DriverStatement(select(_item.seat_id).where(
    _item.event_id == bindparam("event_id"),
    _item.seat_id == any_(bindparam("seat_ids", type_=ARRAY(UUID))),
    _item.holds_inventory,
))


def claimed_seats(
    session: Session, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    rows = _CLAIMED_SEATS.rows(session.connection(), {"event_id": event_id, "seat_ids": list(seat_ids)})
    return [seat_id for (seat_id,) in rows]


def lock_resource(session: Session, resource_id: uuid.UUID) -> Resource | None:
    return session.scalars(
        select(Resource).where(Resource.id == resource_id).with_for_update(key_share=True)
    ).one_or_none()


def windows_of(
    session: Session, resource_ids: Sequence[uuid.UUID], within: Interval | None = None
) -> dict[uuid.UUID, list[Interval]]:
    query = select(AvailabilityWindow).where(AvailabilityWindow.resource_id.in_(resource_ids))
    if within is not None:
        query = query.where(AvailabilityWindow.period.overlaps(_range(within)))
    windows: dict[uuid.UUID, list[Interval]] = {}
    for row in session.scalars(query):
        windows.setdefault(row.resource_id, []).append(interval_of(row.period))
    return windows


def busy_periods(
    session: Session, resource_ids: Sequence[uuid.UUID], within: Interval | None = None
) -> dict[uuid.UUID, list[Interval]]:
    query = select(BookingItem.resource_id, BookingItem.period).where(
        BookingItem.resource_id.in_(resource_ids), BookingItem.holds_inventory
    )
    if within is not None:
        query = query.where(BookingItem.period.overlaps(_range(within)))
    busy: dict[uuid.UUID, list[Interval]] = {}
    for resource_id, period in session.execute(query):
        assert resource_id is not None  # the IN filter above never matches NULL
        busy.setdefault(resource_id, []).append(interval_of(period))
    return busy


def search_resources(
    session: Session, *, category: str | None, max_rate: int | None
) -> Sequence[Resource]:
    query = select(Resource)
    conditions = []
    if category is not None:
        conditions.append(Resource.category == category)
    if max_rate is not None:
        conditions.append(Resource.rate_per_minute <= max_rate)
    if conditions:
        query = query.where(and_(*conditions))
    return session.scalars(query.order_by(Resource.name)).all()


@dataclass(frozen=True)
class ResourceRate:
    """What pricing a time slot needs of its resource."""

    id: uuid.UUID
    rate_per_minute: int
    currency: str


_resource = Resource.__table__.c
_RESOURCE_RATE = select(_resource.id, _resource.rate_per_minute, _resource.currency).where(
    _resource.id == bindparam("resource_id")
)


def resource_rate(connection: Connection, resource_id: uuid.UUID) -> ResourceRate | None:
    row = connection.execute(_RESOURCE_RATE, {"resource_id": resource_id}).one_or_none()
    return ResourceRate(*row) if row is not None else None


def interval_of(period: Range[datetime] | None) -> Interval:
    """A stored period as the domain's interval; slots and windows are always bounded `[)` ranges."""
    if period is None or period.lower is None or period.upper is None:
        raise ValueError(f"expected a bounded period, got {period!r}")
    return Interval(period.lower, period.upper)


def _range(interval: Interval) -> Range[datetime]:
    return Range(interval.starts_at, interval.ends_at, bounds="[)")


def slot_range(starts_at: datetime, ends_at: datetime) -> Range[datetime]:
    return _range(Interval(starts_at, ends_at))
