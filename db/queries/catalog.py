"""Events, seats and time-slot resources: what clients browse and what bookings claim."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    UUID,
    BindParameter,
    ColumnElement,
    Connection,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.orm import Session

from db.driver import DriverStatement
from db.models import (
    BlockedSeat,
    Booking,
    BookingItem,
    Event,
    EventPrice,
    Payment,
    Resource,
    Seat,
    Venue,
)
from db.queries import claims
from domain.availability import Interval
from domain.lifecycle import BookingStatus
from domain.sales import Places, SaleWindow

#: The one tier of a general-admission event.
GENERAL_TIER = "general"


@dataclass(frozen=True)
class EventView:
    event: Event
    venue: Venue | None  # None: general admission
    prices: dict[str, int]
    places: Places | None = None  # general admission only

    @property
    def sale_window(self) -> SaleWindow:
        return sale_window_of(self.event)


def sale_window_of(event: Event) -> SaleWindow:
    return sale_window(event.sales_start_at, event.sales_end_at, event.starts_at, event.status)


def sale_window(sales_start_at: datetime, sales_end_at: datetime, starts_at: datetime, status: str) -> SaleWindow:
    """An event's sale window from its columns."""
    return SaleWindow(sales_start_at, sales_end_at, starts_at, status == "cancelled")


def list_events(
    session: Session, *, now: datetime, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[EventView]:
    """Events by start time (then id); `after` is the (starts_at, id) of the previous page's last."""
    query = select(Event, Venue).outerjoin(Venue, Venue.id == Event.venue_id)
    if after is not None:
        query = query.where(tuple_(Event.starts_at, Event.id) > tuple_(*after))
    rows = session.execute(query.order_by(Event.starts_at, Event.id).limit(limit)).all()
    return _views(session, [(event, venue) for event, venue in rows], now)


def get_event(session: Session, event_id: uuid.UUID, *, now: datetime) -> EventView | None:
    row = session.execute(
        select(Event, Venue).outerjoin(Venue, Venue.id == Event.venue_id).where(Event.id == event_id)
    ).one_or_none()
    return _views(session, [(row[0], row[1])], now)[0] if row is not None else None


def _views(session: Session, rows: list[tuple[Event, Venue | None]], now: datetime) -> list[EventView]:
    ids = [event.id for event, _ in rows]
    prices = prices_of(session, ids)
    places = claims.places_of(session, [event.id for event, venue in rows if venue is None], now)
    return [EventView(event, venue, prices.get(event.id, {}), places.get(event.id)) for event, venue in rows]


def prices_of(session: Session, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    prices: dict[uuid.UUID, dict[str, int]] = {}
    for row in session.scalars(select(EventPrice).where(EventPrice.event_id.in_(event_ids))):
        prices.setdefault(row.event_id, {})[row.tier] = row.amount
    return prices


#: The seat map's statuses, in the order its summary counts them.
SEAT_STATUSES = ("available", "held", "booked", "blocked")


def _seat_map_statement() -> DriverStatement:
    """The whole seat map as one JSON document, built by PostgreSQL (a 60,000-seat venue in tens
    of milliseconds; building and serialising 60,000 objects in Python took most of a second).

    A seat is blocked, booked (confirmed), held (by a hold that has not lapsed) or available."""
    event_id: BindParameter[uuid.UUID] = bindparam("event_id", type_=UUID)
    claim = (
        select(BookingItem.seat_id, Booking.status, claims.lapsed(bindparam("now")).label("lapsed"))
        .join(Booking, Booking.id == BookingItem.booking_id)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(BookingItem.event_id == event_id, BookingItem.holds_inventory)
        .subquery("claim")
    )
    status = case(
        (BlockedSeat.seat_id.is_not(None), literal_column("'blocked'")),
        (claim.c.status == literal_column(f"'{BookingStatus.CONFIRMED.value}'"), literal_column("'booked'")),
        (and_(claim.c.status.is_not(None), ~claim.c.lapsed), literal_column("'held'")),
        else_=literal_column("'available'"),
    )
    seat = (
        select(Seat.id, Seat.section, Seat.row, Seat.number, Seat.tier, EventPrice.amount.label("price"),
               status.label("status"))
        .select_from(Seat)
        .outerjoin(EventPrice, and_(EventPrice.event_id == event_id, EventPrice.tier == Seat.tier))
        .outerjoin(BlockedSeat, and_(BlockedSeat.event_id == event_id, BlockedSeat.seat_id == Seat.id))
        .outerjoin(claim, claim.c.seat_id == Seat.id)
        # A retired seat is shown only where a live booking still holds it.
        .where(Seat.venue_id == bindparam("venue_id", type_=UUID),
               or_(Seat.retired_at.is_(None), status.in_([literal_column("'booked'"), literal_column("'held'")])))
        # Sorted here, not in json_agg(... ORDER BY): an aggregate's own sort carries every
        # seat's JSON and spills to disk. An aggregate over a sorted subquery alone keeps its order.
        .order_by(Seat.section, Seat.row, Seat.number)
        .subquery("seat")
    )

    def fields(*names: str) -> ColumnElement[Any]:
        return func.json_build_object(*(part for name in names for part in (literal_column(f"'{name}'"), seat.c[name])))

    plain = ("id", "row", "number", "tier", "price", "status")
    # Only where the venue has sections: a seat of a plain hall keeps its six fields.
    seat_json = case((seat.c.section != literal_column("''"), fields("section", *plain)), else_=fields(*plain))
    seats = func.json_agg(seat_json)
    counts: list[ColumnElement[Any]] = []
    for name in SEAT_STATUSES:
        counts += [literal_column(f"'{name}'"), func.count().filter(seat.c.status == literal_column(f"'{name}'"))]
    summary = func.json_build_object(*counts, literal_column("'total'"), func.count())
    body = func.json_build_object(
        literal_column("'event_id'"), event_id,
        literal_column("'seats'"), func.coalesce(seats, literal_column("'[]'::json")),
        literal_column("'summary'"), summary,
    )
    return DriverStatement(select(cast(body, Text)).select_from(seat))


_SEAT_MAP = _seat_map_statement()


def seat_map_json(session: Session, event: EventView, now: datetime) -> bytes:
    """The event's seat map as the API answers it, `{"event_id", "seats", "summary"}`, in JSON:
    passed on as PostgreSQL wrote it, never parsed. A general-admission event has no seats."""
    venue_id = event.venue.id if event.venue is not None else None
    ((body,),) = _SEAT_MAP.rows(session.connection(), {"event_id": event.event.id, "venue_id": venue_id, "now": now})
    return str(body).encode()


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
    window: SaleWindow
    event: EventLabel


_seat, _event, _price, _venue = Seat.__table__.c, Event.__table__.c, EventPrice.__table__.c, Venue.__table__.c

#: Built once and run by the driver: the accept path runs it on every booking request, and
#: SQLAlchemy's per-execution work costs more Python time than PostgreSQL takes to answer it.
_PRICED_SEATS = DriverStatement(
    select(_seat.id, _seat.row, _seat.number, _seat.tier, _event.currency, _price.amount,
           _event.sales_start_at, _event.sales_end_at, _event.starts_at, _event.status,
           _event.id, _event.name, _event.ends_at, _venue.id, _venue.name)
    .select_from(Event.__table__)
    .join(Seat.__table__, _seat.venue_id == _event.venue_id)
    .join(Venue.__table__, _venue.id == _event.venue_id)
    .outerjoin(EventPrice.__table__, (_price.event_id == _event.id) & (_price.tier == _seat.tier))
    .where(_event.id == bindparam("event_id"), _seat.id == any_(bindparam("seat_ids", type_=ARRAY(UUID))),
           _seat.retired_at.is_(None))
)


def priced_seats(connection: Connection, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID]) -> list[PricedSeat]:
    """The requested seats at the event's venue (retired ones are no longer there) with the
    event's price for each: one query."""
    rows = _PRICED_SEATS.rows(connection, {"event_id": event_id, "seat_ids": list(seat_ids)})
    found = {
        row[0]: PricedSeat(
            SeatLabel(*row[:4]), row[4], row[5], SaleWindow(row[6], row[7], row[8], row[9] == "cancelled"),
            EventLabel(row[10], row[11], row[8], row[12], row[13], row[14]),
        )
        for row in rows
    }
    return [found[seat_id] for seat_id in seat_ids if seat_id in found]


@dataclass(frozen=True)
class EventForSale:
    id: uuid.UUID
    currency: str
    capacity: int | None
    window: SaleWindow
    #: A general-admission event's price per place (its "general" tier).
    general_price: int | None
    label: EventLabel


def event_for_sale(connection: Connection, event_id: uuid.UUID) -> EventForSale | None:
    row = connection.execute(
        select(_event.id, _event.currency, _event.capacity, _event.sales_start_at, _event.sales_end_at,
               _event.starts_at, _event.status, _price.amount, _event.name, _event.ends_at, _venue.id, _venue.name)
        .outerjoin(EventPrice.__table__, (_price.event_id == _event.id) & (_price.tier == GENERAL_TIER))
        .outerjoin(Venue.__table__, _venue.id == _event.venue_id)
        .where(_event.id == event_id)
    ).one_or_none()
    if row is None:
        return None
    (event_id, currency, capacity, opens, closes, starts_at, status, price, name, ends_at, venue_id,
     venue_name) = row
    return EventForSale(
        event_id, currency, capacity, sale_window(opens, closes, starts_at, status), price,
        EventLabel(event_id, name, starts_at, ends_at, venue_id, venue_name),
    )


def lock_event(session: Session, event_id: uuid.UUID) -> EventForSale | None:
    """Lock a general-admission event's row: its placements take places one at a time."""
    session.execute(select(_event.id).where(_event.id == event_id).with_for_update(key_share=True))
    return event_for_sale(session.connection(), event_id)


_item = BookingItem.__table__.c

_mine, _taken = BookingItem.__table__.alias("mine"), BookingItem.__table__.alias("taken")
_holder, _holder_payment = Booking.__table__.alias("holder"), Payment.__table__.alias("holder_payment")

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
            _holder.c.id == _taken.c.booking_id, _holder_payment.c.booking_id == _taken.c.booking_id,
            ~claims.lapsed(bindparam("now"), _holder, _holder_payment),
        ),
    )
    .order_by(_seat.id)
    .with_for_update(of=Seat.__table__, key_share=True)
)


def lock_seats_of(session: Session, booking_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
    """Lock the seats a booking asks for, in id order, so two placements of overlapping seats
    cannot deadlock; returns their ids, or none at all if one of them is already held by another
    booking whose hold has not lapsed (a committed claim: the booking can be refused without
    waiting for any seat's lock, which is what most requests of a sold-out seat meet).

    A claim committed while this waited for a lock is not seen here (the check ran before the
    wait): the caller checks again after the locks (`claims.seat_holders`).

    FOR NO KEY UPDATE, not FOR UPDATE: the lock serializes placements, and it must not conflict
    with the KEY SHARE locks that inserting a booking item takes on its seat (the foreign key
    check), or the API's accept path would wait on the workers (and could deadlock with them).
    """
    rows = _LOCK_SEATS_OF.rows(session.connection(), {"booking_id": booking_id, "now": now})
    return [seat_id for (seat_id,) in rows]


@dataclass(frozen=True)
class EventLabel:
    """What a booking's answer names of the event it is for."""

    id: uuid.UUID
    name: str
    starts_at: datetime
    ends_at: datetime
    venue_id: uuid.UUID | None
    venue_name: str | None


@dataclass(frozen=True)
class ResourceLabel:
    """What a booking's answer names of the resource it is for."""

    id: uuid.UUID
    name: str
    timezone: str


def label_of(session: Session, event_id: uuid.UUID | None, resource_id: uuid.UUID | None) -> EventLabel | ResourceLabel | None:
    if event_id is not None:
        row = session.execute(
            select(Event.id, Event.name, Event.starts_at, Event.ends_at, Venue.id, Venue.name)
            .outerjoin(Venue, Venue.id == Event.venue_id).where(Event.id == event_id)
        ).one_or_none()
        return EventLabel(*row) if row is not None else None
    if resource_id is not None:
        found = session.execute(
            select(Resource.id, Resource.name, Resource.timezone).where(Resource.id == resource_id)
        ).one_or_none()
        return ResourceLabel(*found) if found is not None else None
    return None


def interval_of(period: Range[datetime] | None) -> Interval:
    """A stored period as the domain's interval; slots and windows are always bounded `[)` ranges."""
    if period is None or period.lower is None or period.upper is None:
        raise ValueError(f"expected a bounded period, got {period!r}")
    return Interval(period.lower, period.upper)


def _range(interval: Interval) -> Range[datetime]:
    return Range(interval.starts_at, interval.ends_at, bounds="[)")


def slot_range(starts_at: datetime, ends_at: datetime) -> Range[datetime]:
    return _range(Interval(starts_at, ends_at))
