"""Reading venues with their seat counts."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from db.models import Seat, Venue

_SEAT_COUNT = (
    select(func.count()).select_from(Seat).where(Seat.venue_id == Venue.id, Seat.retired_at.is_(None))
    .correlate(Venue).scalar_subquery()
)


def list_venues(
    session: Session, *, limit: int, after: tuple[str, uuid.UUID] | None = None
) -> list[tuple[Venue, int]]:
    """Venues by name (then id); `after` is the (name, id) of the previous page's last."""
    query = select(Venue, _SEAT_COUNT)
    if after is not None:
        query = query.where(tuple_(Venue.name, Venue.id) > tuple_(*after))
    rows = session.execute(query.order_by(Venue.name, Venue.id).limit(limit)).all()
    return [(venue, count) for venue, count in rows]


def get_venue(session: Session, venue_id: uuid.UUID) -> tuple[Venue, int] | None:
    row = session.execute(select(Venue, _SEAT_COUNT).where(Venue.id == venue_id)).one_or_none()
    return (row[0], row[1]) if row is not None else None
