"""A booking locked for a unit of work, and its changes written back in one statement.

`lock_booking` locks the booking and its payment and hands them out detached from the session:
services change them in memory (status, payment step, amounts, a moved status's transition,
the inventory claim), and when the transaction commits, one statement writes all of it back
(run by the driver, `db.driver`). The ORM's unit of work would spend three statements and
several times the Python time on the same rows; a worker runs this on every step of every booking.

Both rows stay locked until the commit, so writing every column back cannot overwrite anyone's
change. What is held here reaches the database only at commit: no caller reads back what it
has just changed in the same transaction, and savepoints are refused while rows are held.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import bindparam, event, inspect, select, text
from sqlalchemy.orm import Session, SessionTransaction, make_transient_to_detached

from db.driver import DriverStatement
from db.models import Booking, BookingTransition, Payment

#: (attribute, column) of each mapped column, in the order the lock statement selects them.
_BOOKING_ATTRIBUTES = [(a.key, a.columns[0]) for a in inspect(Booking).column_attrs]
_PAYMENT_ATTRIBUTES = [(a.key, a.columns[0]) for a in inspect(Payment).column_attrs]

_MAPPERS = (inspect(Booking), inspect(Payment))  # both keyed by the booking's id

_LOCK_BOOKING = DriverStatement(
    select(*(column for _, column in _BOOKING_ATTRIBUTES), *(column for _, column in _PAYMENT_ATTRIBUTES))
    .join(Payment.__table__, Payment.booking_id == Booking.id)
    .where(Booking.id == bindparam("booking_id"))
    .with_for_update(key_share=True)
)

#: Every mapped column but the key, from the mappers: a column added later is written too.
_BOOKING_WRITTEN = [(key, column) for key, column in _BOOKING_ATTRIBUTES if not column.primary_key]
_PAYMENT_WRITTEN = [(key, column) for key, column in _PAYMENT_ATTRIBUTES if not column.primary_key]

_WRITE_BACK = DriverStatement(text(f"""
WITH claims AS (
    UPDATE booking_items SET holds_inventory = CAST(:claims AS boolean)
    WHERE booking_id = :booking_id AND CAST(:claims AS boolean) IS NOT NULL
), history AS (
    INSERT INTO booking_transitions (booking_id, from_status, to_status, reason, at)
    SELECT :booking_id, moved.from_status, moved.to_status, moved.reason, moved.at
    FROM unnest(CAST(:from_statuses AS text[]), CAST(:to_statuses AS text[]), CAST(:reasons AS text[]),
                CAST(:ats AS timestamptz[])) WITH ORDINALITY AS moved(from_status, to_status, reason, at, n)
    ORDER BY moved.n
), booking AS (
    UPDATE bookings SET {", ".join(f"{column.name} = :b_{key}" for key, column in _BOOKING_WRITTEN)}
    WHERE id = :booking_id
)
UPDATE payments SET {", ".join(f"{column.name} = :p_{key}" for key, column in _PAYMENT_WRITTEN)}
WHERE booking_id = :booking_id
"""))

_HELD = "locked_bookings"

Entity = TypeVar("Entity", Booking, Payment)


@dataclass
class LockedBooking:
    booking: Booking
    payment: Payment
    history: list[BookingTransition] = field(default_factory=list)
    #: True/False: the booking's items claim (or free) their inventory at commit; None: untouched.
    claims: bool | None = None

    @property
    def changed(self) -> bool:
        return bool(
            self.history or self.claims is not None
            or inspect(self.booking).modified or inspect(self.payment).modified
        )


def lock_booking(session: Session, booking_id: uuid.UUID) -> tuple[Booking, Payment] | None:
    """Lock the booking and its payment in one statement (one round trip); their changes are
    written back when the transaction commits. Locking it again returns the same objects.

    Every row lock here is FOR NO KEY UPDATE: keys never change, and foreign-key checks (KEY
    SHARE) by other transactions need not wait.
    """
    already = held(session, booking_id)
    if already is not None:
        return already.booking, already.payment
    if any(mapper.identity_key_from_primary_key((booking_id,)) in session.identity_map for mapper in _MAPPERS):
        # An in-session copy could hold unflushed changes that the held copy would not see.
        raise RuntimeError("lock_booking must come before any ORM load of the booking in its transaction")
    rows = _LOCK_BOOKING.rows(session.connection(), {"booking_id": booking_id})
    if not rows:
        return None
    values = rows[0]
    # Built detached, never in the session's unit of work: the write-back below is their only
    # way to the database (and the ORM's loading would cost more than the statement).
    booking = _detached(Booking, _BOOKING_ATTRIBUTES, values[: len(_BOOKING_ATTRIBUTES)])
    payment = _detached(Payment, _PAYMENT_ATTRIBUTES, values[len(_BOOKING_ATTRIBUTES):])
    session.info.setdefault(_HELD, {})[booking.id] = LockedBooking(booking, payment)
    return booking, payment


def _detached(cls: type[Entity], attributes: list[tuple[str, Any]], values: tuple[Any, ...]) -> Entity:
    entity = cls(**{key: value for (key, _), value in zip(attributes, values, strict=True)})
    # As if loaded: an identity and no pending changes, so `changed` sees only what services set.
    make_transient_to_detached(entity)
    return entity


def held(session: Session, booking_id: uuid.UUID) -> LockedBooking | None:
    """The booking if this transaction locked it with `lock_booking`."""
    bookings: dict[uuid.UUID, LockedBooking] | None = session.info.get(_HELD)
    return bookings.get(booking_id) if bookings else None


@event.listens_for(Session, "before_commit")
def _write_back(session: Session) -> None:
    # before_commit runs before the ORM's final flush, so transitions of bookings that were not
    # locked here still go the usual way; popped first, so a failing statement leaves nothing behind.
    for locked in session.info.pop(_HELD, {}).values():
        if locked.changed:
            _WRITE_BACK.execute(session.connection(), _parameters(locked))


@event.listens_for(Session, "after_transaction_create")
def _no_savepoints_while_held(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested and session.info.get(_HELD):
        # A savepoint rolled back would not roll back the rows held in memory.
        raise RuntimeError("a savepoint cannot be opened while a booking is held by lock_booking")


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: committed, rolled back or closed
        session.info.pop(_HELD, None)


def _parameters(locked: LockedBooking) -> dict[str, Any]:
    booking, payment, history = locked.booking, locked.payment, locked.history
    return {
        "booking_id": booking.id, "claims": locked.claims,
        "from_statuses": [t.from_status for t in history], "to_statuses": [t.to_status for t in history],
        "reasons": [t.reason for t in history], "ats": [t.at for t in history],
        **{f"b_{key}": getattr(booking, key) for key, _ in _BOOKING_WRITTEN},
        **{f"p_{key}": getattr(payment, key) for key, _ in _PAYMENT_WRITTEN},
    }
