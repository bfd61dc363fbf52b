"""Time-slot resources: their schedules, the time their bookings hold, and search."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, and_, bindparam, select
from sqlalchemy.orm import Session

from db.models import Booking, BookingItem, Payment, Resource
from db.queries import claims
from db.queries.catalog import interval_of, slot_range
from domain.availability import Interval
from domain.schedule import WEEKDAYS, Schedule, parse_day


def lock_resource(session: Session, resource_id: uuid.UUID) -> Resource | None:
    return session.scalars(
        select(Resource).where(Resource.id == resource_id).with_for_update(key_share=True)
    ).one_or_none()


def busy_periods(
    session: Session, resource_ids: Sequence[uuid.UUID], within: Interval, now: datetime
) -> dict[uuid.UUID, list[Interval]]:
    """Time the resources' bookings hold (a lapsed hold is free), overlapping `within`."""
    query = (
        select(BookingItem.resource_id, BookingItem.period)
        .join(Booking, Booking.id == BookingItem.booking_id)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(BookingItem.resource_id.in_(resource_ids), BookingItem.holds_inventory,
               BookingItem.period.overlaps(slot_range(within.starts_at, within.ends_at)), ~claims.lapsed(now))
    )
    busy: dict[uuid.UUID, list[Interval]] = {}
    for resource_id, period in session.execute(query):
        assert resource_id is not None  # the query asks for resources' items only
        busy.setdefault(resource_id, []).append(interval_of(period))
    return busy


class ScheduleColumns(Protocol):
    timezone: str
    weekly_hours: dict[str, Any]
    exceptions: list[Any]
    buffer_minutes: int
    min_notice_minutes: int
    max_advance_days: int
    granularity_minutes: int


def schedule_of(resource: ScheduleColumns) -> Schedule:
    """The resource's hours and rules as the domain reads them (validated when they were set)."""
    return Schedule(
        timezone=resource.timezone,
        weekly={WEEKDAYS.index(day): parse_day(pairs) for day, pairs in resource.weekly_hours.items()},
        exceptions={date.fromisoformat(e["date"]): parse_day(e["hours"]) for e in resource.exceptions},
        buffer=timedelta(minutes=resource.buffer_minutes),
        min_notice=timedelta(minutes=resource.min_notice_minutes),
        max_advance=timedelta(days=resource.max_advance_days),
        granularity=timedelta(minutes=resource.granularity_minutes),
    )


def search_resources(
    session: Session, *, category: str | None, max_rate: int | None
) -> Sequence[Resource]:
    query = select(Resource)
    conditions = []
    if category is not None:
        conditions.append(Resource.category == category)
    if max_rate is not None:
        conditions.append(Resource.rate_per_minute <= max_rate)
    if conditions:
        query = query.where(and_(*conditions))
    return session.scalars(query.order_by(Resource.name)).all()


@dataclass(frozen=True)
class ResourceForSale:
    """What pricing and checking a time slot needs of its resource."""

    id: uuid.UUID
    name: str
    rate_per_minute: int
    currency: str
    schedule: Schedule


_resource = Resource.__table__.c
_RESOURCE_FOR_SALE = select(
    _resource.id, _resource.name, _resource.rate_per_minute, _resource.currency, _resource.timezone,
    _resource.weekly_hours, _resource.exceptions, _resource.buffer_minutes, _resource.min_notice_minutes,
    _resource.max_advance_days, _resource.granularity_minutes,
).where(_resource.id == bindparam("resource_id"))


def resource_for_sale(connection: Connection, resource_id: uuid.UUID) -> ResourceForSale | None:
    row = connection.execute(_RESOURCE_FOR_SALE, {"resource_id": resource_id}).one_or_none()
    if row is None:
        return None
    return ResourceForSale(row.id, row.name, row.rate_per_minute, row.currency, schedule_of(row))
