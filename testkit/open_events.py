"""Events with more seats than anyone will book, made straight in SQL: inventory without contention,
so a load of bookings exercises payments instead of ending `rejected` on a taken seat."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg

#: One tier and one price per event: amounts stay easy to check by hand.
PRICE = 4500


def make_open_events(database_url: str, *, seats: int, starts: list[datetime]) -> list[tuple[str, list[str]]]:
    """A venue of `seats` seats and one event on it per start time; returns (event id, seat ids)."""
    venue_id = uuid.uuid4()
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO venues (id, name, city) VALUES (%s, %s, 'Berlin')",
                     (venue_id, f"Open Arena {venue_id.hex[:6]}"))
        seat_ids = [str(r[0]) for r in conn.execute(
            "INSERT INTO seats (id, venue_id, row, number, tier)"
            " SELECT gen_random_uuid(), %s, 'R' || (n / 1000), n %% 1000, 'standard' FROM generate_series(0, %s - 1) n"
            " RETURNING id", (venue_id, seats))]
        events = []
        for start in starts:
            event_id = uuid.uuid4()
            conn.execute(  # on sale from now until it starts
                "INSERT INTO events (id, venue_id, name, starts_at, ends_at, currency, sales_start_at, sales_end_at)"
                " VALUES (%s, %s, %s, %s, %s, 'EUR', now() - interval '1 minute', %s)",
                (event_id, venue_id, f"Open night {start:%Y-%m-%d %H:%M}", start, start + timedelta(hours=3), start))
            conn.execute("INSERT INTO event_prices (event_id, tier, amount) VALUES (%s, 'standard', %s)",
                         (event_id, PRICE))
            events.append((str(event_id), seat_ids))
    return events
