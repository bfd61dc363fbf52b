"""The catalog's documents: the bodies operators send to create and change venues, events and
resources, and the import file made of them (`bookings catalog import FILE`). They live here, where
the API and the import both find them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from db.queries.catalog_writes import SeatRow
from domain.schedule import parse_day
from services.catalog import EventSpec, VenueSpec
from services.input_types import NO_NUL, Instant, Strict

MAX_SEATS = 100_000
INT32 = 2_147_483_647


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone, e.g. Europe/Berlin") from None
    return name


Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_known_zone)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$"), AfterValidator(str.upper)]
Tier = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=NO_NUL)]
Amount = Annotated[int, Field(ge=0, le=INT32)]
Clock = Annotated[str, StringConstraints(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")]
DayHours = Annotated[list[tuple[Clock, Clock]], Field(max_length=12)]


class SeatIn(Strict):
    section: Annotated[str, StringConstraints(max_length=40, pattern=NO_NUL)] | None = None
    row: Annotated[str, StringConstraints(min_length=1, max_length=10, pattern=NO_NUL)]
    number: Annotated[int, Field(ge=0, le=INT32)]
    tier: Tier


class VenueCreate(Strict):
    name: Text
    timezone: TimeZoneName
    ref: Ref | None = None
    city: Text | None = None
    seats: Annotated[list[SeatIn], Field(min_length=1, max_length=MAX_SEATS)]

    @model_validator(mode="after")
    def _each_seat_once(self) -> VenueCreate:
        places = {(seat.section or "", seat.row, seat.number) for seat in self.seats}
        if len(places) != len(self.seats):
            raise ValueError("a seat (section, row, number) is listed twice")
        return self

    def spec(self) -> VenueSpec:
        seats = [SeatRow(seat.section or "", seat.row, seat.number, seat.tier) for seat in self.seats]
        return VenueSpec(name=self.name, timezone=self.timezone, ref=self.ref, city=self.city, seats=seats)


def _sale_window_in_order(opens: datetime | None, closes: datetime | None) -> None:
    if opens is not None and closes is not None and closes <= opens:
        raise ValueError("sales_end_at must be after sales_start_at")


class EventCreate(Strict):
    """At a venue (`venue_id`, seated) or with a `capacity` (general admission, one price under
    the tier "general")."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["venue_id"], "properties": {"capacity": {"type": "null"}}},
        {"required": ["capacity"], "properties": {"venue_id": {"type": "null"}}},
    ]})

    name: Text
    ref: Ref | None = None
    venue_id: uuid.UUID | None = None
    capacity: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    starts_at: Instant
    ends_at: Instant
    sales_start_at: Instant | None = None
    sales_end_at: Instant | None = None
    currency: Currency
    prices: Annotated[dict[Tier, Amount], Field(min_length=1, max_length=50)]

    def _seated(self) -> bool:
        return self.venue_id is not None

    @model_validator(mode="after")
    def _consistent(self) -> EventCreate:
        if self._seated() == (self.capacity is not None):
            raise ValueError("give venue_id (a seated event) or capacity (general admission), not both")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.capacity is not None and set(self.prices) != {"general"}:
            raise ValueError('a general-admission event has one price, under the tier "general"')
        _sale_window_in_order(self.sales_start_at, self.sales_end_at)
        return self

    def spec(self, venue_id: uuid.UUID | None = None) -> EventSpec:
        return EventSpec(
            name=self.name, ref=self.ref, venue_id=venue_id or self.venue_id, capacity=self.capacity,
            starts_at=self.starts_at, ends_at=self.ends_at, sales_start_at=self.sales_start_at,
            sales_end_at=self.sales_end_at, currency=self.currency, prices=self.prices,
        )


class EventUpdate(Strict):
    name: Text | None = None
    prices: Annotated[dict[Tier, Amount], Field(min_length=1, max_length=50)] | None = None
    sales_start_at: Instant | None = None
    sales_end_at: Instant | None = None

    @model_validator(mode="after")
    def _something(self) -> EventUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one of name, prices, sales_start_at, sales_end_at")
        _sale_window_in_order(self.sales_start_at, self.sales_end_at)
        return self


class Location(Strict):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lng: Annotated[float, Field(ge=-180, le=180)]


class HoursException(Strict):
    date: date
    hours: DayHours = Field(default_factory=list, description="No hours: closed that day")


def _valid_day(hours: list[tuple[str, str]]) -> None:
    try:
        parse_day(hours)
    except ValueError as ex:
        raise ValueError(f"{hours}: {ex}") from None


WeeklyHours = dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], DayHours]


class ResourceFields(Strict):
    """What a resource is and its rules; every field optional here (a PATCH)."""

    name: Text | None = None
    ref: Ref | None = None
    category: Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=NO_NUL)] | None = None
    location: Location | None = None
    rate_per_minute: Amount | None = None
    currency: Currency | None = None
    timezone: TimeZoneName | None = None
    weekly_hours: WeeklyHours | None = None
    exceptions: Annotated[list[HoursException], Field(max_length=100)] | None = None
    buffer_minutes: Annotated[int, Field(ge=0, le=1440)] | None = None
    min_notice_minutes: Annotated[int, Field(ge=0, le=525_600)] | None = None
    max_advance_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    granularity_minutes: Annotated[int, Field(ge=1, le=1440)] | None = None

    @model_validator(mode="after")
    def _valid_hours(self) -> ResourceFields:
        for hours in (self.weekly_hours or {}).values():
            _valid_day(hours)
        for exception in self.exceptions or []:
            _valid_day(exception.hours)
        if self.exceptions and len({e.date for e in self.exceptions}) != len(self.exceptions):
            raise ValueError("each date may have one exception")
        return self

    def values(self, *, complete: bool) -> dict[str, Any]:
        """Column values; `complete`: with defaults for what the body leaves out (a create, or an
        import, where a field left out of a re-imported file goes back to its default)."""
        given = {
            # A null empties what may be empty (location, ref); elsewhere it is "leave as it is".
            key: value for key, value in self.model_dump(exclude_unset=True, mode="json").items()
            if value is not None or key in ("location", "ref")
        }
        location = given.pop("location", ...)
        if location is not ...:
            given["lat"], given["lng"] = (location["lat"], location["lng"]) if location else (None, None)
        return {**RESOURCE_DEFAULTS, **given} if complete else given


RESOURCE_DEFAULTS: dict[str, Any] = {
    "ref": None, "lat": None, "lng": None, "exceptions": [], "buffer_minutes": 0, "min_notice_minutes": 0,
    "max_advance_days": 365, "granularity_minutes": 1,
}


class ResourceUpdate(ResourceFields):
    @model_validator(mode="after")
    def _something(self) -> ResourceUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class ResourceCreate(ResourceFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "required": ["name", "category", "rate_per_minute", "currency", "timezone", "weekly_hours"],
    })

    @model_validator(mode="after")
    def _complete(self) -> ResourceCreate:
        missing = [name for name in ("name", "category", "rate_per_minute", "currency", "timezone", "weekly_hours")
                   if getattr(self, name) is None]
        if missing:
            raise ValueError(f"missing: {', '.join(missing)}")
        return self


class EventImport(EventCreate):
    """An event in an import file: its venue named by `venue_ref`; its own `ref` required."""

    ref: Ref
    venue_ref: Ref | None = None

    def _seated(self) -> bool:
        return self.venue_id is not None or self.venue_ref is not None


class VenueImport(VenueCreate):
    ref: Ref


class ResourceImport(ResourceCreate):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "required": ["ref", "name", "category", "rate_per_minute", "currency", "timezone", "weekly_hours"],
    })

    @model_validator(mode="after")
    def _has_ref(self) -> ResourceImport:
        if self.ref is None:
            raise ValueError("an imported resource needs a ref")
        return self


class CatalogDocument(Strict):
    """What `bookings catalog import FILE` reads: the API's bodies, repeatable by `ref`."""

    venues: list[VenueImport] = Field(default_factory=list)
    events: list[EventImport] = Field(default_factory=list)
    resources: list[ResourceImport] = Field(default_factory=list)
