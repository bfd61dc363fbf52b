"""Claiming inventory for a booking: the locked, short transaction that prevents double booking.

Locks are taken booking first, then inventory rows in id order (seats; a resource's or a
general-admission event's row), so two placements that want the same inventory wait for each
other instead of deadlocking. After the locks, the claim is checked again: a competing booking
may have won while we waited. The partial unique index, the exclusion constraint and the check
of a general-admission event's places claimed against its capacity stay as the backstop if this
code is ever wrong.

The sale rules are checked again here (the API checked them at accept; the sale may have closed
since). A hold that has lapsed does not stand in the way: the booking that holds it is expired
in the same unit of work (its items are freed before this one's are claimed, at commit), and a
message is staged so that a worker releases its card authorization.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from db.models import Booking
from db.queries import catalog, claims, resources
from db.queries.bookings import RequestedItem, requested_items
from db.unit_of_work import LockedBooking, UnitOfWork
from domain.availability import Interval
from domain.lifecycle import BookingStatus
from domain.sales import sales_refusal
from domain.schedule import SlotRefusal, slot_refusal
from domain.workflow import Step, next_step
from services import queues
from services.outbox import StagedMessage, stage

UNAVAILABLE = SlotRefusal.UNAVAILABLE.value


def hold_inventory(
    uow: UnitOfWork, locked: LockedBooking, *, now: datetime, hold_ttl: timedelta
) -> list[StagedMessage]:
    """Move a requested booking to awaiting_payment with its inventory claimed, or reject it.
    Returns the messages that release the authorizations of lapsed holds it expired."""
    booking = locked.booking
    (first, *_) = items = requested_items(uow.session.connection(), booking.id)
    released: list[StagedMessage] = []
    if booking.resource_id is not None:
        refusal = _slot_refusal(uow, first, now, released)
    elif first.seat_id is None:
        refusal = _places_refusal(uow, locked, first, now, released)
    else:
        refusal = _seat_refusal(uow, booking, first, [item.seat_id for item in items if item.seat_id], now, released)
    if refusal is not None:
        locked.move(BookingStatus.REJECTED, now, reason=refusal)
        return released
    booking.expires_at = now + hold_ttl
    locked.move(BookingStatus.AWAITING_PAYMENT, now)
    return released


def release_lapsed_holds(
    uow: UnitOfWork, booking_ids: Sequence[uuid.UUID], now: datetime, released: list[StagedMessage]
) -> bool:
    """Expire each booking whose hold has lapsed; False (and the rest left alone) at the first
    that is locked by another transaction or no longer lapsed: its hold stands.

    The lock is tried, never waited for: the booking's own worker may hold it while it waits
    for inventory locks this transaction holds."""
    for booking_id in sorted(set(booking_ids)):
        lapsed = _expire_if_lapsed(uow, booking_id, now, released)
        if lapsed is None:
            return False
    return True


def _expire_if_lapsed(
    uow: UnitOfWork, booking_id: uuid.UUID, now: datetime, released: list[StagedMessage]
) -> LockedBooking | None:
    taken = uow.lock_where(Booking.id == booking_id, limit=1)
    if not taken or next_step(taken[0].snapshot(), now) is not Step.EXPIRE:
        return None
    other = taken[0]
    other.move(BookingStatus.EXPIRED, now, reason="hold_expired")
    if next_step(other.snapshot(), now) is not None:  # an authorization or a checkout page to close
        released.append(stage(uow.session, *queues.CANCEL_BOOKING, str(other.id)))
    return other


def _seat_refusal(
    uow: UnitOfWork, booking: Booking, first: RequestedItem, seat_ids: list[uuid.UUID], now: datetime,
    released: list[StagedMessage],
) -> str | None:
    assert booking.event_id is not None
    session = uow.session
    if first.window is None:  # no such event
        return "invalid"
    closed = sales_refusal(first.window, now)
    if closed is not None:
        return closed
    if not catalog.lock_seats_of(session, booking.id, now):  # another booking holds one of them
        return UNAVAILABLE
    # Checked after the locks: a competing booking may have claimed a seat while we waited.
    if claims.seats_not_for_sale(session, booking.event_id, seat_ids):
        return UNAVAILABLE
    holders = claims.seat_holders(session, booking.event_id, seat_ids, now)
    if any(not holder.lapsed for holder in holders):
        return UNAVAILABLE
    if not release_lapsed_holds(uow, [holder.booking_id for holder in holders], now, released):
        return UNAVAILABLE
    return None


def _places_refusal(
    uow: UnitOfWork, locked: LockedBooking, item: RequestedItem, now: datetime, released: list[StagedMessage]
) -> str | None:
    """General admission: under the event's row lock, count and claim; exactly the capacity is sold.
    The claim is written here, so that the database's own check of the places claimed against
    the capacity, the backstop if this count were ever wrong, refuses it as a rejection."""
    assert item.event_id is not None
    session = uow.session
    event = catalog.lock_event(session, item.event_id)
    if event is None or event.capacity is None:
        return "invalid"
    closed = sales_refusal(event.window, now)
    if closed is not None:
        return closed
    places = claims.places_of(session, [event.id], now)[event.id]
    if places.available < item.quantity:
        return UNAVAILABLE
    shortfall = places.shortfall(item.quantity)
    # Each lapsed hold frees at least one place: `shortfall` of them are enough if all can be taken.
    for booking_id, quantity in claims.lapsed_general_holders(session, event.id, now, limit=shortfall):
        if shortfall > 0 and _expire_if_lapsed(uow, booking_id, now, released) is not None:
            shortfall -= quantity
    if shortfall > 0 or not uow.claim_places(locked):
        return UNAVAILABLE
    return None


def _slot_refusal(uow: UnitOfWork, item: RequestedItem, now: datetime, released: list[StagedMessage]) -> str | None:
    assert item.resource_id is not None and item.period is not None
    session = uow.session
    resource = resources.lock_resource(session, item.resource_id)
    if resource is None:
        return "invalid"
    schedule = resources.schedule_of(resource)
    slot = catalog.interval_of(item.period)
    own_rule = slot_refusal(schedule, slot, now)
    if own_rule is not None:
        return own_rule.value
    around = Interval(slot.starts_at - schedule.buffer, slot.ends_at + schedule.buffer)
    holders = claims.slot_holders(session, resource.id, around, now)
    if slot_refusal(schedule, slot, now, [period for holder, period in holders if not holder.lapsed]):
        return UNAVAILABLE
    if not release_lapsed_holds(uow, [holder.booking_id for holder, _ in holders if holder.lapsed], now, released):
        return UNAVAILABLE
    return None
