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

A sweep over many bookings (the expiry sweep) locks them with `lock_snapshots_where`, which
reads only what `next_step` decides on, and moves those that need nothing else with `move_each`:
the whole batch is written in one set-based statement at commit, with the same history, claims
and notifications a locked booking's move has. A booking of such a batch that needs more (a
void to claim) is locked in full with `lock` or `lock_where` like any other.

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

from sqlalchemy import ColumnElement, Connection, bindparam, inspect, or_, select, text
from sqlalchemy.exc import IntegrityError
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

_SET_CLAIMS = DriverStatement(text(
    "UPDATE booking_items SET holds_inventory = CAST(:claims AS boolean)"
    " WHERE booking_id = ANY(CAST(:booking_ids AS uuid[]))"
))

#: The check that refuses a general-admission claim past the event's capacity.
PLACES_WITHIN_CAPACITY = "event_places_within_capacity"

_b, _p = Booking.__table__.c, Payment.__table__.c
#: What `lock_snapshots_where` reads: the booking's id, who hears of its moves, then the
#: arguments of `_snapshot` in order.
_SNAPSHOT_COLUMNS = select(
    _b.id, _b.client_id, _b.customer_email,
    _b.status, _b.payment_mode, _b.capture_mode, _b.payment_method.is_not(None), _p.status, _p.step,
    _b.expires_at, _b.confirm_requested_at.is_not(None), _b.cancel_requested_at.is_not(None),
    _p.amount_captured, _p.amount_refunded, or_(_p.intent_id.is_not(None), _p.checkout_session_id.is_not(None)),
    _p.refund_requested, _p.dispute["status"].astext,
).join(Payment.__table__, _p.booking_id == _b.id)

#: A batch of moves (`move_each`) in one statement: each booking's status, history and claims.
_MOVE_EACH = DriverStatement(text("""
WITH moved AS (
    SELECT * FROM unnest(CAST(:booking_ids AS uuid[]), CAST(:from_statuses AS text[]),
                         CAST(:to_statuses AS text[]), CAST(:reasons AS text[]), CAST(:ats AS timestamptz[]),
                         CAST(:claims AS boolean[]))
        AS moved(booking_id, from_status, to_status, reason, at, claims)
), claims AS (
    UPDATE booking_items SET holds_inventory = moved.claims
    FROM moved WHERE booking_items.booking_id = moved.booking_id AND moved.claims IS NOT NULL
), history AS (
    INSERT INTO booking_transitions (booking_id, from_status, to_status, reason, at)
    SELECT booking_id, from_status, to_status, reason, at FROM moved
)
UPDATE bookings SET status = moved.to_status, reason = coalesce(moved.reason, bookings.reason), updated_at = moved.at
FROM moved WHERE bookings.id = moved.booking_id
"""))

Entity = TypeVar("Entity", Booking, Payment)


def _snapshot(
    status: str, payment_mode: str, capture_mode: str, has_payment_method: bool, payment_status: str,
    step: str | None, expires_at: datetime | None, confirm_requested: bool, cancel_requested: bool,
    amount_captured: int, amount_refunded: int, has_provider_payment: bool, refund_requested: int,
    dispute_status: str | None,
) -> BookingSnapshot:
    """What `next_step` decides on, from a booking's and its payment's values (locked either way)."""
    return BookingSnapshot(
        status=BookingStatus(status), payment_mode=PaymentMode(payment_mode), capture_mode=CaptureMode(capture_mode),
        has_payment_method=has_payment_method, payment_status=PaymentStatus(payment_status),
        pending_step=PaymentStep(step) if step else None, expires_at=expires_at,
        confirm_requested=confirm_requested, cancel_requested=cancel_requested,
        amount_captured=amount_captured, amount_refunded=amount_refunded,
        has_provider_payment=has_provider_payment, refund_requested=refund_requested,
        dispute_status=dispute_status,
    )


@dataclass(frozen=True)
class LockedSnapshot:
    """A booking locked by `UnitOfWork.lock_snapshots_where`: what `next_step` decides on and who
    hears of its moves, without its entities (a batch of these costs little more than its rows)."""

    id: uuid.UUID
    client_id: uuid.UUID
    customer_email: str | None
    snapshot: BookingSnapshot


@dataclass(frozen=True)
class _Move:
    locked: LockedSnapshot
    to: BookingStatus
    reason: str | None
    at: datetime
    claims: bool | None


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
        return _snapshot(
            booking.status, booking.payment_mode, booking.capture_mode, booking.payment_method is not None,
            payment.status, payment.step, booking.expires_at, booking.confirm_requested_at is not None,
            booking.cancel_requested_at is not None, payment.amount_captured, payment.amount_refunded,
            payment.intent_id is not None or payment.checkout_session_id is not None, payment.refund_requested,
            (payment.dispute or {}).get("status"),
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
        self._snapshots: dict[uuid.UUID, LockedSnapshot] = {}
        self._moves: dict[uuid.UUID, _Move] = {}
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
        self._forget()
        session.rollback()  # nothing left after a commit; everything when commit was not called
        session.close()

    def lock(self, booking_id: uuid.UUID) -> LockedBooking | None:
        """Lock the booking and its payment (one round trip); locking it again returns the same."""
        if booking_id in self._held:
            return self._held[booking_id]
        self._refuse_moved([booking_id])
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
        self._refuse_moved([row[_ID] for row in rows])
        return [self._hold(tuple(row)) for row in rows if row[_ID] not in self._held]

    def claim_places(self, claimant: LockedBooking) -> bool:
        """Write now, in a savepoint, the claim of a general-admission booking on its places,
        after the frees of the bookings this unit of work has expired (their places pass to it):
        False, with neither written, if the database refuses the claim because the event's places
        claimed would pass its capacity (`event_places_within_capacity`). Commit writes the same
        values again, which changes nothing."""
        session = self.session
        freed = [locked.id for locked in self._held.values() if locked.claims is False]
        try:
            with session.begin_nested():
                connection = session.connection()
                _SET_CLAIMS.execute(connection, {"booking_ids": freed, "claims": False})
                _SET_CLAIMS.execute(connection, {"booking_ids": [claimant.id], "claims": True})
        except IntegrityError as error:
            if getattr(getattr(error.orig, "diag", None), "constraint_name", None) != PLACES_WITHIN_CAPACITY:
                raise
            return False
        return True

    def lock_snapshots_where(self, *conditions: ColumnElement[bool], limit: int) -> list[LockedSnapshot]:
        """As `lock_where`, reading only what `next_step` decides on: for sweeps over many
        bookings, most of which `move_each` moves as they are. Bookings held in full or moved
        already are left out."""
        statement = (
            _SNAPSHOT_COLUMNS.where(*conditions).order_by(_b.id).limit(limit)
            .with_for_update(key_share=True, skip_locked=True)
        )
        taken = []
        for booking_id, client_id, customer_email, *state in self.session.execute(statement):
            if booking_id in self._held or booking_id in self._moves:
                continue
            locked = self._snapshots[booking_id] = LockedSnapshot(booking_id, client_id, customer_email,
                                                                  _snapshot(*state))
            taken.append(locked)
        return taken

    def move_each(
        self, bookings: Sequence[LockedSnapshot], target: BookingStatus, now: datetime, reason: str | None = None
    ) -> None:
        """Move each booking as `LockedBooking.move` would (the lifecycle, the history, the claims),
        written for all of them in one statement at commit. Only moves that free inventory or
        leave it are taken: the batch is written before the bookings held in full, whose claims
        must come after every free (see `commit`)."""
        for locked in bookings:
            if self._snapshots.get(locked.id) is not locked or locked.id in self._moves or locked.id in self._held:
                raise RuntimeError(f"booking {locked.id} is not locked for a batch move in this unit of work")
            current = locked.snapshot.status
            check_transition(current, target)
            claims = None
            if (current in HOLDS_INVENTORY) != (target in HOLDS_INVENTORY):
                claims = target in HOLDS_INVENTORY
            if claims:
                raise ValueError(f"a batch move claims no inventory: {current} -> {target}")
            self._moves[locked.id] = _Move(locked, target, reason, now, claims)

    def commit(self) -> None:
        # Frees before claims: a seat or slot passed from a lapsed hold to a new booking in this
        # unit of work must never have two claims at once (the unique index checks each row).
        # The batch moves free only, so they go first.
        changed = sorted((locked for locked in self._held.values() if locked.changed),
                         key=lambda locked: locked.claims is True)
        moves = list(self._moves.values())
        if changed or moves:
            connection = self.session.connection()
            if moves:
                _MOVE_EACH.execute(connection, {
                    "booking_ids": [move.locked.id for move in moves],
                    "from_statuses": [move.locked.snapshot.status.value for move in moves],
                    "to_statuses": [move.to.value for move in moves], "reasons": [move.reason for move in moves],
                    "ats": [move.at for move in moves], "claims": [move.claims for move in moves],
                })
            if changed:
                _WRITE_BACK.execute_many(connection, [_parameters(locked) for locked in changed])
            # No transition without its events and emails, and none of them without it.
            self._record_notifications(connection, [
                *(told for move in moves if (told := notifications.of_transition(
                    move.locked.id, move.locked.client_id, move.locked.customer_email, move.to, move.at)) is not None),
                *(told for locked in changed
                  for told in notifications.happenings(locked.booking, locked.history, locked.events)),
            ])
        self._forget()
        self.session.commit()

    def _forget(self) -> None:
        self._held.clear()
        self._snapshots.clear()
        self._moves.clear()

    def _refuse_moved(self, booking_ids: Sequence[uuid.UUID]) -> None:
        # A booking changes one way in a unit of work: in full, or in a batch move.
        moved = [booking_id for booking_id in booking_ids if booking_id in self._moves]
        if moved:
            raise RuntimeError(f"booking {moved[0]} was moved in a batch in this unit of work")

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
