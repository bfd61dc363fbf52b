"""Writing the catalog: venues with their seats, events with prices, blocked seats, resources."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text
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
#: tier can change. RETURNING says which rows were new.
_UPSERT_SEATS = text("""
INSERT INTO seats (id, venue_id, section, row, number, tier)
SELECT gen_random_uuid(), :venue_id, s.section, s.row, s.number, s.tier
FROM unnest(CAST(:sections AS text[]), CAST(:rows AS text[]), CAST(:numbers AS integer[]), CAST(:tiers AS text[]))
     AS s(section, row, number, tier)
ON CONFLICT (venue_id, section, row, number) DO UPDATE SET tier = EXCLUDED.tier
WHERE seats.tier IS DISTINCT FROM EXCLUDED.tier
RETURNING (xmax = 0) AS inserted
""")


def upsert_seats(session: Session, venue_id: uuid.UUID, seats: Sequence[SeatRow]) -> tuple[int, int]:
    """Add the venue's seats not there yet and re-tier those that changed: (added, changed)."""
    rows = session.execute(_UPSERT_SEATS, {
        "venue_id": venue_id, "sections": [s.section for s in seats], "rows": [s.row for s in seats],
        "numbers": [s.number for s in seats], "tiers": [s.tier for s in seats],
    }).scalars().all()
    added = sum(1 for inserted in rows if inserted)
    return added, len(rows) - added


def seat_count(session: Session, venue_id: uuid.UUID) -> int:
    return session.scalar(select(func.count()).select_from(Seat).where(Seat.venue_id == venue_id)) or 0


def seat_rows(session: Session, venue_id: uuid.UUID) -> set[SeatRow]:
    rows = session.execute(select(Seat.section, Seat.row, Seat.number, Seat.tier).where(Seat.venue_id == venue_id))
    return {SeatRow(*row) for row in rows}


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
    """The seats among `seat_ids` at the venue, locked in id order (as a placement locks them)."""
    return list(session.scalars(
        select(Seat.id).where(Seat.venue_id == venue_id, Seat.id.in_(seat_ids))
        .order_by(Seat.id).with_for_update(key_share=True)
    ))


def block(session: Session, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID]) -> None:
    if seat_ids:
        session.execute(insert(BlockedSeat).values([
            {"event_id": event_id, "seat_id": seat_id} for seat_id in seat_ids
        ]).on_conflict_do_nothing())


def unblock(session: Session, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID]) -> None:
    session.execute(delete(BlockedSeat).where(BlockedSeat.event_id == event_id, BlockedSeat.seat_id.in_(seat_ids)))
