"""Archive tables: terminal bookings moved out of the hot tables, with everything they had.

The archive tables are created by migration 0003 as copies of the hot tables' columns. They
are described here with their own MetaData, so the ORM models (and Alembic's comparison of
models with the database) stay about the hot schema only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, Table, delete, insert, literal, select
from sqlalchemy.orm import Session

from db.models import Booking, BookingItem, BookingTransition, Payment, Seat
from db.queries.bookings import BookingView
from domain.lifecycle import FINAL
from domain.workflow import VOIDABLE

archive_metadata = MetaData()


def _archive_of(table: Table, *extra: Column[Any]) -> Table:
    columns = [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in table.columns]
    return Table(f"archived_{table.name}", archive_metadata, *columns, *extra)


archived_bookings = _archive_of(Booking.__table__, Column("archived_at", DateTime(timezone=True)))
archived_items = _archive_of(BookingItem.__table__)
archived_transitions = _archive_of(BookingTransition.__table__)
archived_payments = _archive_of(Payment.__table__)

#: Children first on the way out, so foreign keys to `bookings` never dangle.
_MOVES = (
    (BookingItem.__table__, archived_items),
    (BookingTransition.__table__, archived_transitions),
    (Payment.__table__, archived_payments),
)


def archive_batch(session: Session, *, updated_before: datetime, batch_size: int, now: datetime) -> int:
    """Move up to `batch_size` terminal bookings last changed before `updated_before`.

    A booking whose payment still has work left (a step in flight, money held) stays hot.
    """
    ids = session.scalars(
        select(Booking.id)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.status.in_([s.value for s in FINAL]), Booking.updated_at < updated_before)
        .where(Payment.step.is_(None), Payment.status.not_in([s.value for s in VOIDABLE]))
        .order_by(Booking.updated_at)
        .limit(batch_size)
        .with_for_update(of=Booking, skip_locked=True)
    ).all()
    if not ids:
        return 0
    for hot, cold in _MOVES:
        names = [c.name for c in hot.columns]
        session.execute(insert(cold).from_select(names, select(*hot.columns).where(hot.c.booking_id.in_(ids))))
        session.execute(delete(hot).where(hot.c.booking_id.in_(ids)))
    hot = Booking.__table__
    names = [c.name for c in hot.columns]
    session.execute(
        insert(archived_bookings).from_select(
            [*names, "archived_at"],
            select(*hot.columns, literal(now, DateTime(timezone=True))).where(hot.c.id.in_(ids)),
        )
    )
    session.execute(delete(hot).where(hot.c.id.in_(ids)))
    return len(ids)


def archived_view(session: Session, booking_id: uuid.UUID, client_id: uuid.UUID | None) -> BookingView | None:
    """An archived booking in the same shape as a live one (detached objects, read only): a
    client's own only (None: an operator's, any)."""
    query = select(archived_bookings).where(archived_bookings.c.id == booking_id)
    if client_id is not None:
        query = query.where(archived_bookings.c.client_id == client_id)
    row = session.execute(query).mappings().first()
    if row is None:
        return None
    booking = Booking(**{k: v for k, v in row.items() if k != "archived_at"})
    items = [BookingItem(**r) for r in _rows(session, archived_items, booking_id, archived_items.c.id)]
    history = [
        BookingTransition(**r) for r in _rows(session, archived_transitions, booking_id, archived_transitions.c.at)
    ]
    (payment,) = [Payment(**r) for r in _rows(session, archived_payments, booking_id, None)]
    seat_ids = [item.seat_id for item in items if item.seat_id is not None]
    seats = {seat.id: seat for seat in session.scalars(select(Seat).where(Seat.id.in_(seat_ids)))}
    return BookingView(booking, items, payment, history, seats)


def _rows(session: Session, table: Table, booking_id: uuid.UUID, order: Any) -> list[dict[str, Any]]:
    query = select(table).where(table.c.booking_id == booking_id)
    if order is not None:
        query = query.order_by(order)
    return [dict(r) for r in session.execute(query).mappings()]
