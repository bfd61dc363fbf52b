"""A booking changes in one way: locked in a unit of work, written back in one statement at commit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text

from db.unit_of_work import UnitOfWork
from domain.lifecycle import BookingStatus
from tests.support import first_event, seat_request

# What reaches the database at commit is the subject here, read back on connections of their own,
# with a second unit of work holding a lock.
pytestmark = pytest.mark.commits


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

    with UnitOfWork(runtime.context.sessions) as uow:
        locked = uow.lock(booking_id)
        event.listen(runtime.engine, "before_cursor_execute", count)
        locked.move(BookingStatus.AWAITING_PAYMENT, now)
        locked.payment.step, locked.payment.step_started_at = "authorize", now
        assert statements == []  # nothing is written before the commit
        uow.commit()
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


def test_nothing_is_written_without_commit(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[1:2])).json["id"]
    with UnitOfWork(runtime.context.sessions) as uow:
        uow.lock(booking_id).move(BookingStatus.REJECTED, datetime.now(UTC), reason="unavailable")
    with pytest.raises(RuntimeError), UnitOfWork(runtime.context.sessions) as uow:
        uow.lock(booking_id).move(BookingStatus.REJECTED, datetime.now(UTC), reason="unavailable")
        raise RuntimeError("the unit of work fails before its commit")
    assert _row(runtime, "SELECT status FROM bookings WHERE id = :id", id=booking_id)[0] == "requested"


def test_locking_again_returns_the_same_booking_with_its_changes(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = uuid.UUID(api.book(seat_request(event_id, seats[2:3])).json["id"])
    with UnitOfWork(runtime.context.sessions) as uow:
        locked = uow.lock(booking_id)
        locked.move(BookingStatus.AWAITING_PAYMENT, datetime.now(UTC))
        again = uow.lock(booking_id)
        assert again is locked and again.status is BookingStatus.AWAITING_PAYMENT
        uow.commit()
    assert _row(runtime, "SELECT status FROM bookings WHERE id = :id", id=booking_id)[0] == "awaiting_payment"


def test_every_column_is_written_back(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[3:4])).json["id"]
    with UnitOfWork(runtime.context.sessions) as uow:
        locked = uow.lock(booking_id)
        locked.booking.customer_name, locked.payment.provider, locked.payment.decline_code = "Grace", "other", "x"
        uow.commit()
    assert _row(runtime, "SELECT b.customer_name, p.provider, p.decline_code FROM bookings b"
                         " JOIN payments p ON p.booking_id = b.id WHERE b.id = :id",
                id=booking_id) == ("Grace", "other", "x")


def test_a_batch_locked_together_is_written_back_together_and_skips_what_others_hold(api, runtime):
    from db.models import Booking

    event_id, seats = first_event(runtime.context.sessions)
    ids = [uuid.UUID(api.book(seat_request(event_id, seats[i:i + 1])).json["id"]) for i in (4, 5, 6)]
    now = datetime.now(UTC)
    with UnitOfWork(runtime.context.sessions) as holder:
        holder.lock(ids[0])  # another transaction holds the first
        with UnitOfWork(runtime.context.sessions) as uow:
            taken = uow.lock_where(Booking.id.in_(ids), limit=10)
            assert sorted(locked.id for locked in taken) == sorted(ids[1:])
            for locked in taken:
                locked.move(BookingStatus.AWAITING_PAYMENT, now)
            uow.commit()
    statuses = {_row(runtime, "SELECT status FROM bookings WHERE id = :id", id=i)[0] for i in ids[1:]}
    assert statuses == {"awaiting_payment"}
    assert _row(runtime, "SELECT status FROM bookings WHERE id = :id", id=ids[0])[0] == "requested"


def _written(runtime, booking_id):  # type: ignore[no-untyped-def]
    """What a move left in the database, without the booking's own id and times."""
    return (
        _row(runtime, "SELECT status, reason FROM bookings WHERE id = :id", id=booking_id),
        _row(runtime, "SELECT array_agg(holds_inventory) FROM booking_items WHERE booking_id = :id", id=booking_id)[0],
        _row(runtime, "SELECT array_agg(ARRAY[from_status, to_status, reason] ORDER BY id) FROM booking_transitions"
                      " WHERE booking_id = :id", id=booking_id)[0],
        _row(runtime, "SELECT array_agg(kind) FROM booking_emails WHERE booking_id = :id", id=booking_id)[0],
    )


def test_a_batch_move_writes_what_a_move_in_full_writes_in_one_statement(runtime):
    from db.models import Booking
    from testkit.held_bookings import make_held_bookings

    now = datetime.now(UTC)
    in_full, *batch = make_held_bookings(runtime.context.sessions, count=4, authorized=0, stripe_client=None,
                                         expired_at=now)
    with UnitOfWork(runtime.context.sessions) as uow:
        uow.lock(in_full).move(BookingStatus.EXPIRED, now, reason="hold_expired")
        uow.commit()
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    with UnitOfWork(runtime.context.sessions) as uow:
        taken = uow.lock_snapshots_where(Booking.id.in_(batch), limit=10)
        assert sorted(locked.id for locked in taken) == sorted(batch)
        assert {locked.snapshot.status for locked in taken} == {BookingStatus.AWAITING_PAYMENT}
        event.listen(runtime.engine, "before_cursor_execute", count)
        uow.move_each(taken, BookingStatus.EXPIRED, now, reason="hold_expired")
        uow.commit()
    event.remove(runtime.engine, "before_cursor_execute", count)

    assert len(statements) == 2  # the moves, then the emails and events they owe
    expected = _written(runtime, in_full)
    assert expected[0] == ("expired", "hold_expired") and expected[1] == [False] and expected[3] == ["expired"]
    assert all(_written(runtime, booking_id) == expected for booking_id in batch)


def test_a_batch_move_claims_nothing_and_a_booking_moves_one_way_only(api, runtime):
    from db.models import Booking

    event_id, seats = first_event(runtime.context.sessions)
    booking_id = uuid.UUID(api.book(seat_request(event_id, seats[7:8])).json["id"])
    now = datetime.now(UTC)
    with UnitOfWork(runtime.context.sessions) as uow:
        (locked,) = uow.lock_snapshots_where(Booking.id == booking_id, limit=1)
        with pytest.raises(ValueError):  # it would claim the seat before the frees of the batch
            uow.move_each([locked], BookingStatus.AWAITING_PAYMENT, now)
        uow.move_each([locked], BookingStatus.REJECTED, now, reason="unavailable")
        with pytest.raises(RuntimeError):
            uow.lock(booking_id)
        with pytest.raises(RuntimeError):
            uow.move_each([locked], BookingStatus.REJECTED, now, reason="unavailable")
        uow.commit()
    assert _row(runtime, "SELECT status, reason FROM bookings WHERE id = :id", id=booking_id) == (
        "rejected", "unavailable")
