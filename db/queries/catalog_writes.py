"""Writing the catalog: venues with their seats, events with prices, blocked seats, resources."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import BlockedSeat, Event, EventPrice, Resource, Seat, Venue


@dataclass(frozen=True)
class SeatRow:
    section: str
    row: str
    number: int
    tier: str


#: Every seat of a venue in one statement (60,000 rows in well under a second): ORM adds would
#: spend seconds in Python. A seat already there keeps its id (bookings point at it); only its
#: tier can change, and a retired seat the layout has again comes back. RETURNING says which
#: rows were new.
_UPSERT_SEATS = text("""
INSERT INTO seats (id, venue_id, section, row, number, tier)
SELECT gen_random_uuid(), :venue_id, s.section, s.row, s.number, s.tier
FROM unnest(CAST(:sections AS text[]), CAST(:rows AS text[]), CAST(:numbers AS integer[]), CAST(:tiers AS text[]))
     AS s(section, row, number, tier)
ON CONFLICT (venue_id, section, row, number) DO UPDATE SET tier = EXCLUDED.tier, retired_at = NULL
WHERE seats.tier IS DISTINCT FROM EXCLUDED.tier OR seats.retired_at IS NOT NULL
RETURNING (xmax = 0) AS inserted
""")

#: The venue's seats (not retired already) that the layout no longer has, locked, and whether
#: any booking, live, past or archived, points at one.
_DROPPED_SEATS = text("""
WITH dropped AS (
    SELECT s.id FROM seats s
    WHERE s.venue_id = :venue_id AND s.retired_at IS NULL
      AND NOT EXISTS (
          SELECT FROM unnest(CAST(:sections AS text[]), CAST(:rows AS text[]), CAST(:numbers AS integer[]))
                      AS k(section, row, number)
          WHERE (k.section, k.row, k.number) = (s.section, s.row, s.number))
    FOR UPDATE OF s
), booked AS (
    SELECT seat_id FROM booking_items WHERE seat_id IN (SELECT id FROM dropped)
    UNION
    SELECT seat_id FROM archived_booking_items WHERE seat_id IN (SELECT id FROM dropped)
)
SELECT dropped.id, booked.seat_id IS NOT NULL FROM dropped LEFT JOIN booked ON booked.seat_id = dropped.id
ORDER BY dropped.id
""")


def _layout(venue_id: uuid.UUID, seats: Sequence[SeatRow]) -> dict[str, Any]:
    return {"venue_id": venue_id, "sections": [s.section for s in seats], "rows": [s.row for s in seats],
            "numbers": [s.number for s in seats], "tiers": [s.tier for s in seats]}


def upsert_seats(session: Session, venue_id: uuid.UUID, seats: Sequence[SeatRow]) -> tuple[int, int]:
    """Add the venue's seats not there yet, re-tier those that changed and bring back retired
    ones the layout has again: (added, changed)."""
    rows = session.execute(_UPSERT_SEATS, _layout(venue_id, seats)).scalars().all()
    added = sum(1 for inserted in rows if inserted)
    return added, len(rows) - added


def drop_seats_not_in(
    session: Session, venue_id: uuid.UUID, seats: Sequence[SeatRow], now: datetime
) -> tuple[int, int]:
    """Take out the venue's seats the layout no longer has: (deleted, retired). A seat no booking
    ever pointed at is deleted (with its blocks); one with bookings is retired, kept for their
    history: never sold again, and shown only to a booking that still holds it."""
    dropped = session.execute(_DROPPED_SEATS, _layout(venue_id, seats)).all()
    unbooked = [seat_id for seat_id, booked in dropped if not booked]
    booked = [seat_id for seat_id, was_booked in dropped if was_booked]
    if unbooked:
        session.execute(delete(BlockedSeat).where(BlockedSeat.seat_id.in_(unbooked)))
        session.execute(delete(Seat).where(Seat.id.in_(unbooked)))
    if booked:
        session.execute(update(Seat).where(Seat.id.in_(booked)).values(retired_at=now))
    return len(unbooked), len(booked)


def by_ref(session: Session, model: type[Venue] | type[Event] | type[Resource], ref: str) -> object | None:
    return session.scalars(select(model).where(model.ref == ref).with_for_update(key_share=True)).one_or_none()


def set_prices(session: Session, event_id: uuid.UUID, prices: Mapping[str, int]) -> None:
    """The event's tier prices become exactly `prices` (bookings keep what they were priced at)."""
    session.execute(delete(EventPrice).where(EventPrice.event_id == event_id, EventPrice.tier.not_in(list(prices))))
    for tier, amount in sorted(prices.items()):
        statement = insert(EventPrice).values(event_id=event_id, tier=tier, amount=amount)
        session.execute(statement.on_conflict_do_update(
            index_elements=[EventPrice.event_id, EventPrice.tier], set_={"amount": statement.excluded.amount},
        ))


def seats_at_venue(session: Session, venue_id: uuid.UUID, seat_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The seats among `seat_ids` at the venue (not retired), locked in id order (as a placement
    locks them)."""
    return list(session.scalars(
        select(Seat.id).where(Seat.venue_id == venue_id, Seat.id.in_(seat_ids), Seat.retired_at.is_(None))
        .order_by(Seat.id).with_for_update(key_share=True)
    ))


def block(session: Session, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID]) -> None:
    if seat_ids:
        session.execute(insert(BlockedSeat).values([
            {"event_id": event_id, "seat_id": seat_id} for seat_id in seat_ids
        ]).on_conflict_do_nothing())


def unblock(session: Session, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID]) -> None:
    session.execute(delete(BlockedSeat).where(BlockedSeat.event_id == event_id, BlockedSeat.seat_id.in_(seat_ids)))
