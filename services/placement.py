"""Claiming inventory for a booking: the locked, short transaction that prevents double booking.

Locks are taken booking first, then inventory rows in id order, so two placements that want
overlapping seats wait for each other instead of deadlocking. After the locks, the claim is
checked again: a competing booking may have won while we waited. The partial unique index
and the exclusion constraint stay as the backstop if this code is ever wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from db.models import BookingItem
from db.queries import catalog
from db.queries.bookings import items_of
from db.unit_of_work import LockedBooking
from domain.availability import slot_fits
from domain.lifecycle import BookingStatus


def hold_inventory(session: Session, locked: LockedBooking, *, now: datetime, hold_ttl: timedelta) -> None:
    """Move a requested booking to awaiting_payment with its inventory claimed, or reject it."""
    booking = locked.booking
    refusal = (
        _seat_refusal(session, booking.id, booking.event_id) if booking.event_id
        else _slot_refusal(session, items_of(session, booking.id))
    )
    if refusal is not None:
        locked.move(BookingStatus.REJECTED, now, reason=refusal)
        return
    booking.expires_at = now + hold_ttl
    locked.move(BookingStatus.AWAITING_PAYMENT, now)


def _seat_refusal(session: Session, booking_id: uuid.UUID, event_id: uuid.UUID) -> str | None:
    seat_ids = catalog.lock_seats_of(session, booking_id)
    if not seat_ids:  # a seat booking has at least one: another booking holds one of them
        return "unavailable"
    # Checked after the locks: a competing booking may have claimed a seat while we waited.
    if catalog.claimed_seats(session, event_id, seat_ids):
        return "unavailable"
    return None


def _slot_refusal(session: Session, items: Sequence[BookingItem]) -> str | None:
    (item,) = items
    assert item.resource_id is not None
    if catalog.lock_resource(session, item.resource_id) is None:
        return "invalid"
    slot = catalog.interval_of(item.period)
    windows = catalog.windows_of(session, [item.resource_id], within=slot).get(item.resource_id, [])
    if not slot_fits(windows, slot):
        return "outside_availability"
    if catalog.busy_periods(session, [item.resource_id], within=slot):
        return "unavailable"
    return None
