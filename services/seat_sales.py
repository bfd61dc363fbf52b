"""What the API's accept path remembers of seated events and their venues' seats, so a seat
booking is priced without reading the catalog first.

Nothing here decides on its own: a booking priced from it is written by a statement that checks,
in the same statement, that the catalog still says what the booking was priced from
(`db.queries.bookings.insert_booking_request_as_priced`), and anything it cannot answer (an
event or seat it does not know, a sale it sees closed, a tier with no price) goes to the catalog
read, which decides and refuses with the usual codes. A change is therefore never sold at the
old terms; what is remembered is only what makes the common case one round trip instead of two.

Entries are read again after `TTL_SECONDS` (a venue's new seats are seen then) by one request
while the others go on with them, and an event whose check failed is forgotten at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, bindparam, text

from db.driver import DriverStatement
from db.queries.bookings import PricedFrom
from db.queries.catalog import EventLabel, SeatLabel
from domain.sales import SaleWindow, sales_refusal

#: How long an event or a venue's seats are used before they are read again.
TTL_SECONDS = 60.0
#: Seats remembered at once, of all venues; a venue with more is not remembered (its bookings
#: read the catalog), and past it every venue is read again.
MAX_SEATS = 100_000
#: Events remembered at once; past it, the oldest is dropped.
MAX_EVENTS = 1_000


@dataclass(frozen=True)
class _Event:
    label: EventLabel
    currency: str
    window: SaleWindow
    status: str
    prices: dict[str, int]
    read_at: float


@dataclass(frozen=True)
class _Venue:
    #: None: too many seats to remember.
    seats: dict[uuid.UUID, SeatLabel] | None
    read_at: float


#: Opens a connection in autocommit (`Context.autocommit`).
Connect = Callable[[], AbstractContextManager[Connection]]

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True)
class PricedSeats:
    """A seat booking priced from what was remembered; `priced_from` is what the insert checks."""

    currency: str
    prices: list[int]
    seats: list[SeatLabel]
    event: EventLabel
    priced_from: PricedFrom


_EVENT = DriverStatement(text("""
SELECT e.venue_id, e.currency, e.name, e.starts_at, e.ends_at, e.sales_start_at, e.sales_end_at, e.status,
       v.name, (SELECT jsonb_object_agg(p.tier, p.amount) FROM event_prices AS p WHERE p.event_id = e.id)
FROM events AS e JOIN venues AS v ON v.id = e.venue_id
WHERE e.id = :event_id
"""))

_SEATS = DriverStatement(text(
    "SELECT id, row, number, tier FROM seats WHERE venue_id = :venue_id AND retired_at IS NULL LIMIT :limit"
).bindparams(bindparam("limit")))


class SeatSales:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._events: dict[uuid.UUID, _Event] = {}
        self._venues: dict[uuid.UUID, _Venue] = {}
        self._seats = 0  # remembered, of all venues
        #: Events found not to be seated at a venue (or not at all), and when.
        self._absent: dict[uuid.UUID, float] = {}
        # One reader at a time: a cold worker meets dozens of concurrent requests for one event.
        self._reading = threading.Lock()

    def priced(
        self, connect: Connect, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID], now: datetime
    ) -> PricedSeats | None:
        """The seats priced as remembered (read first, on a connection from `connect`, if not
        remembered), or None: the catalog read decides (an unknown event or seat, a sale closed
        or a tier without a price here)."""
        event, venue = self._known(connect, event_id)
        if event is None or venue is None or venue.seats is None:
            return None
        seats = [venue.seats.get(seat_id) for seat_id in seat_ids]
        if sales_refusal(event.window, now) is not None:
            return None
        prices = [event.prices.get(seat.tier) if seat is not None else None for seat in seats]
        known = [seat for seat in seats if seat is not None]
        priced = [price for price in prices if price is not None]
        if len(priced) != len(seat_ids) or len(known) != len(seat_ids):
            return None
        label = event.label
        assert label.venue_id is not None and label.venue_name is not None
        return PricedSeats(event.currency, priced, known, label, PricedFrom(
            label.venue_id, label.name, label.starts_at, label.ends_at, event.window.sales_start_at,
            event.window.sales_end_at, event.status, label.venue_name, known,
        ))

    def forget(self, event_id: uuid.UUID) -> None:
        """The catalog changed under this event: read it again next time."""
        event = self._events.pop(event_id, None)
        if event is not None and event.label.venue_id is not None:
            venue = self._venues.pop(event.label.venue_id, None)
            self._seats -= len((venue.seats or {}) if venue else ())

    def _known(self, connect: Connect, event_id: uuid.UUID) -> tuple[_Event | None, _Venue | None]:
        event = self._events.get(event_id)
        venue = self._venues.get(event.label.venue_id) if event is not None and event.label.venue_id else None
        if event is not None and venue is not None:
            # Past its time an entry is still safe to price from (the insert checks it): one
            # request reads it again while the others go on with it rather than wait.
            if (self._stale(event) or self._stale(venue)) and self._reading.acquire(blocking=False):
                try:
                    return self._read(connect, event_id)
                finally:
                    self._reading.release()
            return event, venue
        absent = self._absent.get(event_id)
        if absent is not None and self._clock() - absent < TTL_SECONDS:
            return None, None
        with self._reading:
            return self._read(connect, event_id)

    def _read(self, connect: Connect, event_id: uuid.UUID) -> tuple[_Event | None, _Venue | None]:
        """Read what is not remembered or past its time (a request this one waited for may have)."""
        with connect() as connection:
            return self._read_on(connection, event_id)

    def _read_on(self, connection: Connection, event_id: uuid.UUID) -> tuple[_Event | None, _Venue | None]:
        event = self._events.get(event_id)
        if event is None or self._stale(event):
            rows = _EVENT.rows(connection, {"event_id": event_id})
            if not rows:  # no such event, or general admission: the catalog read decides
                self._events.pop(event_id, None)
                _bounded(self._absent)[event_id] = self._clock()
                return None, None
            (venue_id, currency, name, starts_at, ends_at, opens, closes, status, venue_name, prices), = rows
            event = _Event(
                EventLabel(event_id, name, starts_at, ends_at, venue_id, venue_name), currency,
                SaleWindow(opens, closes, starts_at, status == "cancelled"), status, prices or {}, self._clock(),
            )
            _bounded(self._events)[event_id] = event
        venue_id = event.label.venue_id
        assert venue_id is not None
        venue = self._venues.get(venue_id)
        if venue is None or self._stale(venue):
            rows = _SEATS.rows(connection, {"venue_id": venue_id, "limit": MAX_SEATS + 1})
            seats = {row[0]: SeatLabel(*row) for row in rows} if len(rows) <= MAX_SEATS else None
            if seats and self._seats + len(seats) > MAX_SEATS:
                self._venues.clear()
                self._seats = 0
            previous = self._venues.get(venue_id)
            self._seats += len(seats or ()) - len((previous.seats or {}) if previous else ())
            venue = self._venues[venue_id] = _Venue(seats, self._clock())
        return event, venue

    def _stale(self, entry: _Event | _Venue) -> bool:
        return self._clock() - entry.read_at >= TTL_SECONDS


def _bounded(entries: dict[_K, _V]) -> dict[_K, _V]:
    """`entries`, with its oldest entry dropped if it is full."""
    if len(entries) >= MAX_EVENTS:
        entries.pop(next(iter(entries)))
    return entries
