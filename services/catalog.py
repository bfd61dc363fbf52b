"""What operators do to the catalog, for the API and the import alike.

Each `put_*` creates an object or, given the `ref` of one that exists, brings it in line with
what it is given, and says which it did: the import repeats them safely, the API creates.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from db.models import Event, Resource, Venue
from db.queries import catalog, claims
from db.queries import catalog_writes as writes
from db.queries.catalog_writes import SeatRow
from db.unit_of_work import UnitOfWork
from domain.errors import InvalidRequest, NotFound, RefTaken, SeatHeld
from services.outbox import StagedMessage
from services.placement import release_lapsed_holds


class Change(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class VenueSpec:
    name: str
    timezone: str
    seats: Sequence[SeatRow]
    ref: str | None = None
    city: str | None = None


@dataclass(frozen=True)
class EventSpec:
    name: str
    starts_at: datetime
    ends_at: datetime
    currency: str
    prices: Mapping[str, int]
    venue_id: uuid.UUID | None = None
    capacity: int | None = None
    sales_start_at: datetime | None = None
    sales_end_at: datetime | None = None
    ref: str | None = None


@dataclass(frozen=True)
class ResourceSpec:
    """Column values of a resource (validated by the caller); `ref` identifies it."""

    values: Mapping[str, Any] = field(default_factory=dict)


def put_venue(
    uow: UnitOfWork, spec: VenueSpec, *, now: datetime, create_only: bool = False
) -> tuple[Venue, Change]:
    session = uow.session
    venue = _existing(uow, Venue, spec.ref, create_only)
    change = Change.UNCHANGED
    if venue is None:
        venue, change = Venue(id=uuid.uuid4(), ref=spec.ref), Change.CREATED
        session.add(venue)
    if (venue.name, venue.timezone, venue.city) != (spec.name, spec.timezone, spec.city):
        venue.name, venue.timezone, venue.city = spec.name, spec.timezone, spec.city
        change = change if change is Change.CREATED else Change.UPDATED
    session.flush()
    # The layout is the venue's seats: what it adds is added, what it drops is deleted, or
    # retired if bookings point at it.
    added, changed = writes.upsert_seats(session, venue.id, spec.seats)
    deleted = retired = 0
    if change is not Change.CREATED:
        deleted, retired = writes.drop_seats_not_in(session, venue.id, spec.seats, now)
    if change is Change.UNCHANGED and (added or changed or deleted or retired):
        change = Change.UPDATED
    return venue, change


def put_event(uow: UnitOfWork, spec: EventSpec, *, now: datetime, create_only: bool = False) -> tuple[Event, Change]:
    session = uow.session
    if spec.venue_id is not None and session.get(Venue, spec.venue_id) is None:
        raise InvalidRequest("no such venue", details=[{"field": "venue_id", "code": "unknown"}])
    event = _existing(uow, Event, spec.ref, create_only)
    values: dict[str, Any] = {
        "name": spec.name, "starts_at": spec.starts_at, "ends_at": spec.ends_at, "currency": spec.currency,
        "venue_id": spec.venue_id, "capacity": spec.capacity,
        # The sale opens now and closes when the event starts, unless the operator says otherwise.
        "sales_start_at": spec.sales_start_at or (event.sales_start_at if event else now),
        "sales_end_at": spec.sales_end_at or spec.starts_at,
    }
    _check_sale_window(values["sales_start_at"], values["sales_end_at"])
    if event is None:
        event = Event(id=uuid.uuid4(), ref=spec.ref, status="active", **values)
        session.add(event)
        session.flush()
        writes.set_prices(session, event.id, spec.prices)
        return event, Change.CREATED
    if event.venue_id != spec.venue_id or event.capacity != spec.capacity:
        raise InvalidRequest("an event keeps its venue or capacity", details={"ref": spec.ref})
    changed = _assign(event, values) | (_prices_of(uow, event.id) != dict(spec.prices))
    writes.set_prices(session, event.id, spec.prices)
    return event, Change.UPDATED if changed else Change.UNCHANGED


def update_event(uow: UnitOfWork, event_id: uuid.UUID, changes: Mapping[str, Any]) -> Event:
    """Change an event's name, prices or sale window; bookings made keep their prices."""
    event = uow.session.get(Event, event_id, with_for_update={"key_share": True})
    if event is None:
        raise NotFound("no such event")
    _assign(event, {key: value for key, value in changes.items() if key != "prices"})
    _check_sale_window(event.sales_start_at, event.sales_end_at)
    if "prices" in changes:
        if event.capacity is not None and set(changes["prices"]) != {"general"}:
            raise InvalidRequest('a general-admission event has one price, under the tier "general"')
        writes.set_prices(uow.session, event.id, changes["prices"])
    uow.session.flush()
    return event


def put_resource(uow: UnitOfWork, spec: ResourceSpec, *, create_only: bool = False) -> tuple[Resource, Change]:
    resource = _existing(uow, Resource, spec.values.get("ref"), create_only)
    if resource is None:
        resource = Resource(id=uuid.uuid4(), **spec.values)
        uow.session.add(resource)
        uow.session.flush()
        return resource, Change.CREATED
    return resource, Change.UPDATED if _assign(resource, spec.values) else Change.UNCHANGED


def update_resource(uow: UnitOfWork, resource_id: uuid.UUID, values: Mapping[str, Any]) -> Resource:
    """Change any of a resource's fields; bookings made stay as they are."""
    resource = uow.session.get(Resource, resource_id, with_for_update={"key_share": True})
    if resource is None:
        raise NotFound("no such resource")
    if values.get("ref") not in (None, resource.ref) and writes.by_ref(uow.session, Resource, values["ref"]):
        raise RefTaken("another resource has this ref", details={"ref": values["ref"]})
    _assign(resource, values)
    uow.session.flush()
    return resource


def block_seats(
    uow: UnitOfWork, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID], *, now: datetime, blocked: bool
) -> list[StagedMessage]:
    """Block (or unblock) seats of one event. A seat held by a live booking cannot be blocked;
    a lapsed hold on it is expired first. Seats are locked as a placement locks them."""
    session = uow.session
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("no such event")
    if event.venue_id is None:
        raise InvalidRequest("a general-admission event has no seats", details=[{"field": "seat_ids", "code": "no_seats"}])
    found = writes.seats_at_venue(session, event.venue_id, seat_ids)
    unknown = sorted(str(seat_id) for seat_id in set(seat_ids) - set(found))
    if unknown:
        raise InvalidRequest("some seats are not at this event's venue",
                             details=[{"field": "seat_ids", "code": "not_at_event", "seat_ids": unknown}])
    if not blocked:
        writes.unblock(session, event_id, found)
        return []
    holders = claims.seat_holders(session, event_id, found, now)
    released: list[StagedMessage] = []
    live = [h for h in holders if not h.lapsed]
    if live or not release_lapsed_holds(uow, [h.booking_id for h in holders], now, released):
        raise SeatHeld("a live booking holds one of these seats",
                       details={"bookings": sorted(str(h.booking_id) for h in live)})
    writes.block(session, event_id, found)
    return released


def _existing(uow: UnitOfWork, model: Any, ref: str | None, create_only: bool) -> Any:
    if ref is None:
        return None
    found = writes.by_ref(uow.session, model, ref)
    if found is not None and create_only:
        raise RefTaken(f"a {model.__tablename__[:-1]} with this ref exists", details={"ref": ref})
    return found


def _assign(entity: Any, values: Mapping[str, Any]) -> bool:
    """Set the attributes that differ; True if any did."""
    changed = False
    for key, value in values.items():
        if getattr(entity, key) != value:
            setattr(entity, key, value)
            changed = True
    return changed


def _check_sale_window(opens: datetime, closes: datetime) -> None:
    if closes <= opens:
        raise InvalidRequest("the sale must close after it opens",
                             details=[{"field": "sales_end_at", "code": "before_sales_start"}])


def _prices_of(uow: UnitOfWork, event_id: uuid.UUID) -> dict[str, int]:
    return catalog.prices_of(uow.session, [event_id]).get(event_id, {})
