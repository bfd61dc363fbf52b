"""The unit of work in which bookings change: lock, change in memory, write back at commit.

    with UnitOfWork(ctx.sessions) as uow:
        booking = uow.lock(booking_id)
        booking.move(BookingStatus.AWAITING_PAYMENT, now)
        uow.commit()

This is the one way a booking, its payment, its history and its inventory claim change.
`lock` locks the booking and its payment in one statement and hands them out detached from the
session; `commit` writes each changed booking back in one statement (all of them in one
pipelined batch), records what the transitions tell clients and customers (`db.notifications`:
webhook events and emails, one more statement when there is anything to tell) and commits.
Leaving the block without `commit` rolls everything back.

Why not the ORM's flush: a worker runs this on every step of every booking, and the ORM spent
three statements and several times the Python time on the same two rows (`bench.cpu_per_booking`).
Both rows stay locked until the commit, so writing every column back overwrites nobody's change.
A change reaches the database only at commit: nothing in the block reads back a locked booking's
rows (the held objects are the truth until then).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import ColumnElement, Connection, bindparam, inspect, select, text
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from db import notifications
from db.driver import DriverStatement
from db.models import Booking, BookingTransition, Payment
from domain.lifecycle import HOLDS_INVENTORY, BookingStatus, check_transition
from domain.notifications import EventType
from domain.payment_facts import BookingFacts, Books, Consequence, Dispute
from domain.payments import CaptureMode, PaymentMode, PaymentStatus, PaymentStep
from domain.workflow import BookingSnapshot

#: (attribute, column) of each mapped column, in the order the lock statements select them.
_BOOKING_ATTRIBUTES = [(a.key, a.columns[0]) for a in inspect(Booking).column_attrs]
_PAYMENT_ATTRIBUTES = [(a.key, a.columns[0]) for a in inspect(Payment).column_attrs]
_ID = [key for key, _ in _BOOKING_ATTRIBUTES].index("id")
_LOCKED_COLUMNS = select(
    *(column for _, column in _BOOKING_ATTRIBUTES), *(column for _, column in _PAYMENT_ATTRIBUTES)
).join(Payment.__table__, Payment.booking_id == Booking.id)

# Every row lock here is FOR NO KEY UPDATE: keys never change, and foreign-key checks (KEY SHARE)
# by other transactions need not wait.
_LOCK_BOOKING = DriverStatement(
    _LOCKED_COLUMNS.where(Booking.id == bindparam("booking_id")).with_for_update(key_share=True)
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
""").bindparams(
    # Typed as their columns, so values that need converting (JSON documents) are converted.
    *(bindparam(f"b_{key}", type_=column.type) for key, column in _BOOKING_WRITTEN),
    *(bindparam(f"p_{key}", type_=column.type) for key, column in _PAYMENT_WRITTEN),
))

Entity = TypeVar("Entity", Booking, Payment)


@dataclass
class LockedBooking:
    """A booking and its payment, locked in a unit of work; every change to them goes through here
    or through their attributes, and reaches the database when the unit of work commits."""

    booking: Booking
    payment: Payment
    history: list[BookingTransition] = field(default_factory=list)
    #: True/False: the booking's items claim (or free) their inventory at commit; None: untouched.
    claims: bool | None = None
    #: Events that are not transitions (a payment failed, a dispute), recorded at commit.
    events: list[tuple[EventType, datetime]] = field(default_factory=list)

    @property
    def id(self) -> uuid.UUID:
        return self.booking.id

    @property
    def status(self) -> BookingStatus:
        return BookingStatus(self.booking.status)

    @property
    def changed(self) -> bool:
        return bool(
            self.history or self.claims is not None or self.events
            or inspect(self.booking).modified or inspect(self.payment).modified
        )

    def move(self, target: BookingStatus, now: datetime, reason: str | None = None) -> None:
        """Change status as the lifecycle allows, record the transition, and claim or free the
        inventory when the new status holds it and the old one did not (or the reverse)."""
        current = self.status
        check_transition(current, target)
        if (current in HOLDS_INVENTORY) != (target in HOLDS_INVENTORY):
            self.claims = target in HOLDS_INVENTORY
        self.booking.status, self.booking.updated_at = target.value, now
        if reason is not None:
            self.booking.reason = reason
        self.history.append(BookingTransition(
            booking_id=self.id, from_status=current.value, to_status=target.value, reason=reason, at=now,
        ))

    def record_event(self, event: EventType, now: datetime) -> None:
        """Tell the client's endpoints of something that is not a transition (a transition
        tells them itself), with the booking's changes at commit."""
        self.events.append((event, now))

    def facts(self) -> BookingFacts:
        booking = self.booking
        return BookingFacts(
            status=self.status, total_amount=booking.total_amount, currency=booking.currency,
            cancel_requested=booking.cancel_requested_at is not None, attempt=self.payment.attempt,
            expires_at=booking.expires_at, created_at=booking.created_at,
            cancel_reason=booking.cancel_reason or "cancelled_by_client",
            refund_requested=self.payment.refund_requested,
            # An immediate capture was asked for with the booking itself.
            confirm_requested=booking.confirm_requested_at is not None or booking.capture_mode == "immediate",
        )

    def books(self) -> Books:
        payment = self.payment
        dispute = Dispute(**payment.dispute) if payment.dispute else None
        return Books(
            PaymentStatus(payment.status), payment.amount_authorized, payment.amount_captured,
            payment.amount_refunded, payment.decline_code, dispute,
        )

    def apply(self, consequence: Consequence, now: datetime) -> None:
        """Record what a payment fact does (`domain.payment_facts.apply_fact`), and tell the
        client's endpoints of what it learns besides the transitions."""
        books, payment, before = consequence.books, self.payment, self.books()
        for news in consequence.news(before, action_required=payment.next_action is not None):
            self.record_event(EventType(f"booking.{news}"), now)
        if books != before:
            payment.status, payment.decline_code = books.status.value, books.decline_code
            payment.amount_authorized, payment.amount_captured = books.authorized, books.captured
            payment.amount_refunded, payment.updated_at = books.refunded, now
            if books.status is PaymentStatus.AUTHORIZED and payment.authorized_at is None:
                payment.authorized_at = now
            payment.dispute = asdict(books.dispute) if books.dispute else None
        for move in consequence.moves:
            self.move(move.to, now, move.reason)
        if consequence.expires_at is not None and consequence.expires_at != self.booking.expires_at:
            self.booking.expires_at, self.booking.updated_at = consequence.expires_at, now

    def snapshot(self) -> BookingSnapshot:
        booking, payment = self.booking, self.payment
        return BookingSnapshot(
            status=self.status,
            payment_mode=PaymentMode(booking.payment_mode),
            capture_mode=CaptureMode(booking.capture_mode),
            has_payment_method=booking.payment_method is not None,
            payment_status=PaymentStatus(payment.status),
            pending_step=PaymentStep(payment.step) if payment.step else None,
            expires_at=booking.expires_at,
            # An immediate capture was asked for with the booking itself.
            confirm_requested=booking.confirm_requested_at is not None or booking.capture_mode == "immediate",
            cancel_requested=booking.cancel_requested_at is not None,
            amount_captured=payment.amount_captured,
            amount_refunded=payment.amount_refunded,
            has_provider_payment=payment.intent_id is not None or payment.checkout_session_id is not None,
            refund_requested=payment.refund_requested,
        )


class UnitOfWork:
    """One transaction over locked bookings: rolled back unless `commit` is called."""

    def __init__(
        self, sessions: sessionmaker[Session], *,
        record_notifications: Callable[[Connection, Sequence[notifications.Happening]], None] = notifications.record,
    ) -> None:
        self._sessions = sessions
        self._record_notifications = record_notifications
        self._held: dict[uuid.UUID, LockedBooking] = {}
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The transaction's session, for the other rows the work reads and writes (catalog
        locks, the ledger, the outbox); never for the locked bookings' own rows."""
        if self._session is None:
            raise RuntimeError("the unit of work is used outside its with block")
        return self._session

    def __enter__(self) -> Self:
        self._session = self._sessions()
        self._session.begin()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        session, self._session = self.session, None
        self._held.clear()
        session.rollback()  # nothing left after a commit; everything when commit was not called
        session.close()

    def lock(self, booking_id: uuid.UUID) -> LockedBooking | None:
        """Lock the booking and its payment (one round trip); locking it again returns the same."""
        if booking_id in self._held:
            return self._held[booking_id]
        rows = _LOCK_BOOKING.rows(self.session.connection(), {"booking_id": booking_id})
        return self._hold(rows[0]) if rows else None

    def lock_where(self, *conditions: ColumnElement[bool], limit: int) -> list[LockedBooking]:
        """Lock up to `limit` bookings matching `conditions`, in id order, skipping any another
        transaction holds (two sweeps never take the same booking, nor wait for each other)."""
        statement = (
            _LOCKED_COLUMNS.where(*conditions).order_by(Booking.id).limit(limit)
            .with_for_update(key_share=True, skip_locked=True)
        )
        rows = self.session.execute(statement).all()
        return [self._hold(tuple(row)) for row in rows if row[_ID] not in self._held]

    def commit(self) -> None:
        # Frees before claims: a seat or slot passed from a lapsed hold to a new booking in this
        # unit of work must never have two claims at once (the unique index checks each row).
        changed = sorted((locked for locked in self._held.values() if locked.changed),
                         key=lambda locked: locked.claims is True)
        if changed:
            connection = self.session.connection()
            _WRITE_BACK.execute_many(connection, [_parameters(locked) for locked in changed])
            # No transition without its events and emails, and none of them without it.
            self._record_notifications(connection, [
                told for locked in changed
                for told in notifications.happenings(locked.booking, locked.history, locked.events)
            ])
        self._held.clear()
        self.session.commit()

    def _hold(self, values: Sequence[Any]) -> LockedBooking:
        # Built detached, never in the session's unit of work: the write-back is their only way
        # to the database (and the ORM's loading would cost more than the statement).
        booking = _detached(Booking, _BOOKING_ATTRIBUTES, values[: len(_BOOKING_ATTRIBUTES)])
        payment = _detached(Payment, _PAYMENT_ATTRIBUTES, values[len(_BOOKING_ATTRIBUTES):])
        locked = self._held[booking.id] = LockedBooking(booking, payment)
        return locked


def _detached(cls: type[Entity], attributes: list[tuple[str, Any]], values: Sequence[Any]) -> Entity:
    entity = cls(**{key: value for (key, _), value in zip(attributes, values, strict=True)})
    # As if loaded: an identity and no pending changes, so `changed` sees only what services set.
    make_transient_to_detached(entity)
    return entity


def _parameters(locked: LockedBooking) -> dict[str, Any]:
    booking, payment, history = locked.booking, locked.payment, locked.history
    return {
        "booking_id": booking.id, "claims": locked.claims,
        "from_statuses": [t.from_status for t in history], "to_statuses": [t.to_status for t in history],
        "reasons": [t.reason for t in history], "ats": [t.at for t in history],
        **{f"b_{key}": getattr(booking, key) for key, _ in _BOOKING_WRITTEN},
        **{f"p_{key}": getattr(payment, key) for key, _ in _PAYMENT_WRITTEN},
    }
