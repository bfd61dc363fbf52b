"""Event sales for operators: capacity, seats held and sold, and revenue kept, per event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class EventSales:
    id: uuid.UUID
    name: str
    starts_at: datetime
    currency: str
    capacity: int  # seats of the venue
    held: int  # claimed by bookings not yet confirmed
    sold: int  # claimed by confirmed bookings
    revenue: int  # captured less refunded, in the smallest unit of `currency`


# Held and sold count active claims only (the partial index on claims serves them); revenue
# counts every payment of the event's bookings, cancelled ones included, since a refund may be
# partial.
_SALES = text("""
    SELECT e.id, e.name, e.starts_at, e.currency,
           (SELECT count(*) FROM seats s WHERE s.venue_id = e.venue_id),
           coalesce(c.held, 0), coalesce(c.sold, 0), coalesce(r.revenue, 0)
    FROM events e
    LEFT JOIN (
        SELECT i.event_id, count(*) FILTER (WHERE b.status <> 'confirmed') AS held,
               count(*) FILTER (WHERE b.status = 'confirmed') AS sold
        FROM booking_items i JOIN bookings b ON b.id = i.booking_id
        WHERE i.holds_inventory AND i.event_id IS NOT NULL GROUP BY i.event_id
    ) c ON c.event_id = e.id
    LEFT JOIN (
        SELECT b.event_id, sum(p.amount_captured - p.amount_refunded) AS revenue
        FROM bookings b JOIN payments p ON p.booking_id = b.id
        WHERE b.event_id IS NOT NULL AND p.amount_captured > 0 GROUP BY b.event_id
    ) r ON r.event_id = e.id
    ORDER BY e.starts_at, e.name
""")


def event_sales(session: Session) -> list[EventSales]:
    return [EventSales(*row) for row in session.execute(_SALES)]
