"""A locked booking's changes reach the database in one statement, and only at commit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text

from db.engine import transaction
from db.models import Booking
from db.queries.bookings import move_booking, set_claims
from db.queries.locked_bookings import lock_booking
from domain.lifecycle import BookingStatus
from tests.support import first_event, seat_request


def _row(runtime, sql: str, **params):  # type: ignore[no-untyped-def]
    with runtime.engine.connect() as conn:
        return conn.execute(text(sql), params).one()


def test_changes_are_written_by_one_statement_at_commit(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[:1])).json["id"]
    now = datetime.now(UTC)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    with transaction(runtime.context.sessions) as session:
        booking, payment = lock_booking(session, booking_id)
        event.listen(runtime.engine, "before_cursor_execute", count)
        set_claims(session, booking.id, True)
        move_booking(session, booking, BookingStatus.AWAITING_PAYMENT, now)
        payment.step, payment.step_started_at = "authorize", now
        assert statements == []  # nothing is written before the commit
    event.remove(runtime.engine, "before_cursor_execute", count)

    assert len(statements) == 1
    status, step = _row(runtime, "SELECT b.status, p.step FROM bookings b JOIN payments p ON p.booking_id = b.id"
                                 " WHERE b.id = :id", id=booking_id)
    assert (status, step) == ("awaiting_payment", "authorize")
    assert _row(runtime, "SELECT bool_and(holds_inventory) FROM booking_items WHERE booking_id = :id",
                id=booking_id)[0] is True
    history = _row(runtime, "SELECT array_agg(to_status ORDER BY id) FROM booking_transitions WHERE booking_id = :id",
                   id=booking_id)[0]
    assert history == ["requested", "awaiting_payment"]


def test_changes_are_dropped_when_the_transaction_rolls_back(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[1:2])).json["id"]
    with pytest.raises(RuntimeError), transaction(runtime.context.sessions) as session:
        booking, _ = lock_booking(session, booking_id)
        move_booking(session, booking, BookingStatus.REJECTED, datetime.now(UTC), reason="unavailable")
        raise RuntimeError("the unit of work fails")
    assert _row(runtime, "SELECT status FROM bookings WHERE id = :id", id=booking_id)[0] == "requested"


def test_locking_again_returns_the_same_rows_with_their_changes(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = uuid.UUID(api.book(seat_request(event_id, seats[2:3])).json["id"])
    with transaction(runtime.context.sessions) as session:
        booking, payment = lock_booking(session, booking_id)
        move_booking(session, booking, BookingStatus.AWAITING_PAYMENT, datetime.now(UTC))
        again, _ = lock_booking(session, booking_id)
        assert again is booking and again.status == "awaiting_payment"
    assert _row(runtime, "SELECT status FROM bookings WHERE id = :id", id=booking_id)[0] == "awaiting_payment"


def test_every_column_is_written_back(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[3:4])).json["id"]
    with transaction(runtime.context.sessions) as session:
        booking, payment = lock_booking(session, booking_id)
        booking.customer_name, payment.provider, payment.decline_code = "Grace", "other", "x"
    assert _row(runtime, "SELECT b.customer_name, p.provider, p.decline_code FROM bookings b"
                         " JOIN payments p ON p.booking_id = b.id WHERE b.id = :id",
                id=booking_id) == ("Grace", "other", "x")


def test_a_savepoint_is_refused_while_a_booking_is_held(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[4:5])).json["id"]
    with pytest.raises(RuntimeError, match="savepoint"), transaction(runtime.context.sessions) as session:
        lock_booking(session, booking_id)
        session.begin_nested()


def test_locking_a_booking_the_session_already_loaded_is_refused(api, runtime):
    # Its loaded copy may carry unflushed changes that the held copy would not see.
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = uuid.UUID(api.book(seat_request(event_id, seats[6:7])).json["id"])
    with pytest.raises(RuntimeError, match="before any ORM load"), transaction(runtime.context.sessions) as session:
        session.get(Booking, booking_id).reason = "unflushed"
        lock_booking(session, booking_id)


def test_a_session_closed_without_commit_forgets_what_it_held(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[5:6])).json["id"]
    session = runtime.context.sessions()
    booking, _ = lock_booking(session, booking_id)
    booking.reason = "not written"
    session.close()
    with session.begin():  # the same session, used again
        session.connection()
    assert _row(runtime, "SELECT reason FROM bookings WHERE id = :id", id=booking_id)[0] is None
