"""A locked booking's changes reach the database in one statement, and only at commit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text

from db.engine import transaction
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
