"""The demo catalog: a venue of 120 seats with two events, and a dozen bookable resources.

Idempotent: running it again adds nothing that is already there (matched by unique names).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.orm import Session

from db.models import AvailabilityWindow, Event, EventPrice, Resource, Seat, Venue

ROWS = "ABCDEFGHIJ"
SEATS_PER_ROW = 12
TIER_OF_ROW = {"A": "premium", "B": "premium", "C": "standard", "D": "standard", "E": "standard",
               "F": "standard", "G": "economy", "H": "economy", "I": "economy", "J": "economy"}
EVENTS = [
    ("The Magic Flute", 30, {"premium": 12000, "standard": 8000, "economy": 4500}),
    ("Jazz Night", 45, {"premium": 9000, "standard": 6000, "economy": 3500}),
]
# name, category, lat, lng, rate per minute (cents)
RESOURCES = [
    ("Dr. Ada Keller", "physiotherapist", 52.5200, 13.4050, 150),
    ("Dr. Ben Ortiz", "physiotherapist", 52.5310, 13.3847, 120),
    ("Dr. Chloe Nguyen", "physiotherapist", 52.4986, 13.4410, 180),
    ("Maya Fischer", "lawyer", 52.5163, 13.3777, 400),
    ("Omar Haddad", "lawyer", 48.1372, 11.5756, 350),
    ("Lena Braun", "tutor", 52.5450, 13.4120, 60),
    ("Room Spree", "meeting_room", 52.5219, 13.4132, 40),
    ("Room Havel", "meeting_room", 52.5075, 13.3903, 35),
    ("Room Isar", "meeting_room", 48.1351, 11.5820, 30),
    ("Studio North", "studio", 52.5580, 13.3900, 80),
    ("Studio South", "studio", 52.4700, 13.4300, 70),
    ("Van Berlin 1", "car", 52.5250, 13.3690, 25),
]
WINDOW_DAYS = 30


def seed_demo(session: Session, *, today: datetime | None = None) -> None:
    today = (today or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    venue = _venue(session)
    for index, (name, days_ahead, prices) in enumerate(EVENTS):
        _event(session, venue, name, today + timedelta(days=days_ahead, hours=19 + index), prices)
    for name, category, lat, lng, rate in RESOURCES:
        _resource(session, name, category, lat, lng, rate, today)


def _venue(session: Session) -> Venue:
    venue = session.scalars(select(Venue).where(Venue.name == "Grand Hall")).one_or_none()
    if venue is not None:
        return venue
    venue = Venue(name="Grand Hall", city="Berlin")
    session.add(venue)
    session.flush()
    session.add_all(
        Seat(venue_id=venue.id, row=row, number=number, tier=TIER_OF_ROW[row])
        for row in ROWS for number in range(1, SEATS_PER_ROW + 1)
    )
    return venue


def _event(session: Session, venue: Venue, name: str, starts_at: datetime, prices: dict[str, int]) -> None:
    if session.scalars(select(Event).where(Event.name == name, Event.venue_id == venue.id)).first():
        return
    event = Event(venue_id=venue.id, name=name, starts_at=starts_at, ends_at=starts_at + timedelta(hours=3),
                  currency="EUR")
    session.add(event)
    session.flush()
    session.add_all(EventPrice(event_id=event.id, tier=tier, amount=amount) for tier, amount in prices.items())


def _resource(session: Session, name: str, category: str, lat: float, lng: float, rate: int, today: datetime) -> None:
    if session.scalars(select(Resource).where(Resource.name == name)).first():
        return
    resource = Resource(name=name, category=category, lat=lat, lng=lng, rate_per_minute=rate, currency="EUR")
    session.add(resource)
    session.flush()
    for day in range(WINDOW_DAYS):
        date = (today + timedelta(days=day)).date()
        opens = datetime.combine(date, time(8, 0), UTC)
        session.add(AvailabilityWindow(resource_id=resource.id, period=Range(opens, opens + timedelta(hours=10), bounds="[)")))
