"""A transition and what it tells clients and customers are one transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

from db.engine import transaction
from db.models import WebhookEndpoint
from db.unit_of_work import UnitOfWork
from domain.lifecycle import BookingStatus
from domain.notifications import EventType
from tests.support import first_event, seat_request

S = BookingStatus


def _booked(api: Any, runtime: Any, seat: int) -> tuple[str, uuid.UUID]:
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[seat:seat + 1])).json["id"]
    with runtime.context.engine.connect() as conn:
        client_id = conn.execute(text("SELECT client_id FROM bookings WHERE id = :id"), {"id": booking_id}).scalar_one()
    return booking_id, client_id


def subscribe(runtime: Any, client_id: uuid.UUID, events: list[str]) -> uuid.UUID:
    with transaction(runtime.context.sessions) as session:
        endpoint = WebhookEndpoint(client_id=client_id, url="http://127.0.0.1:9/hook", events=events, secret="whsec_x")
        session.add(endpoint)
        session.flush()
        return endpoint.id


def _move(runtime: Any, booking_id: str, *targets: BookingStatus) -> None:
    with UnitOfWork(runtime.context.sessions) as uow:
        locked = uow.lock(uuid.UUID(booking_id))
        for target in targets:
            locked.move(target, datetime.now(UTC))
        uow.commit()


def _rows(runtime: Any, sql: str, **params: Any) -> list[Any]:
    with runtime.context.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def test_each_subscribed_transition_makes_one_event_and_one_delivery_per_endpoint(api, runtime):
    booking_id, client_id = _booked(api, runtime, 0)
    everything = subscribe(runtime, client_id, ["*"])
    confirmed_only = subscribe(runtime, client_id, ["booking.confirmed"])
    subscribe(runtime, client_id, ["booking.refunded"])

    _move(runtime, booking_id, S.AWAITING_PAYMENT, S.AUTHORIZED, S.CONFIRMED)

    events = _rows(runtime, "SELECT id, type FROM notification_events WHERE booking_id = :b ORDER BY created_at",
                   b=booking_id)
    assert [t for _, t in events] == ["booking.authorized", "booking.confirmed"]
    assert all(event_id.startswith("evt_") for event_id, _ in events)
    deliveries = _rows(runtime, "SELECT d.endpoint_id, e.type FROM webhook_deliveries d "
                                "JOIN notification_events e ON e.id = d.event_id WHERE e.booking_id = :b", b=booking_id)
    assert sorted(deliveries) == sorted([
        (everything, "booking.authorized"), (everything, "booking.confirmed"), (confirmed_only, "booking.confirmed"),
    ])
    assert _rows(runtime, "SELECT kind, recipient, status FROM booking_emails WHERE booking_id = :b", b=booking_id) == [
        ("confirmed", "ada@example.com", "pending"),
    ]


def test_a_unit_of_work_rolled_back_leaves_no_event_and_no_email(api, runtime):
    booking_id, client_id = _booked(api, runtime, 1)
    subscribe(runtime, client_id, ["*"])
    with pytest.raises(RuntimeError), UnitOfWork(runtime.context.sessions) as uow:
        uow.lock(uuid.UUID(booking_id)).move(S.CANCELLED, datetime.now(UTC))
        uow.lock(uuid.UUID(booking_id)).record_event(EventType.PAYMENT_FAILED, datetime.now(UTC))
        raise RuntimeError("the work fails before its commit")
    assert _rows(runtime, "SELECT count(*) FROM notification_events WHERE booking_id = :b", b=booking_id) == [(0,)]
    assert _rows(runtime, "SELECT count(*) FROM booking_emails WHERE booking_id = :b", b=booking_id) == [(0,)]


def test_an_event_that_is_not_a_transition_is_recorded_at_commit(api, runtime):
    booking_id, client_id = _booked(api, runtime, 2)
    endpoint = subscribe(runtime, client_id, ["booking.payment_failed"])
    with UnitOfWork(runtime.context.sessions) as uow:
        uow.lock(uuid.UUID(booking_id)).record_event(EventType.PAYMENT_FAILED, datetime.now(UTC))
        uow.commit()
    assert _rows(runtime, "SELECT d.endpoint_id, e.type FROM webhook_deliveries d JOIN notification_events e "
                          "ON e.id = d.event_id WHERE e.booking_id = :b", b=booking_id) == [
        (endpoint, "booking.payment_failed"),
    ]


def test_the_same_email_kind_is_owed_once_per_booking(api, runtime):
    booking_id, _ = _booked(api, runtime, 3)
    _move(runtime, booking_id, S.AWAITING_PAYMENT, S.CANCELLED)
    # A second record of the same (booking, kind), as a replayed transition would make, is ignored.
    from db.notifications import Happening, record
    with transaction(runtime.context.sessions) as session:
        record(session.connection(), [Happening(uuid.UUID(booking_id), uuid.uuid4(), datetime.now(UTC), None,
                                                "cancelled", "other@example.com")])
    assert _rows(runtime, "SELECT kind, recipient FROM booking_emails WHERE booking_id = :b", b=booking_id) == [
        ("cancelled", "ada@example.com"),
    ]


def _statements_at_commit(runtime: Any, booking_id: str, target: BookingStatus) -> list[str]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "SAVEPOINT" not in statement:  # the rolled-back test mode's, not the commit's
            statements.append(statement)

    with UnitOfWork(runtime.context.sessions) as uow:
        locked = uow.lock(uuid.UUID(booking_id))
        locked.move(target, datetime.now(UTC))
        event.listen(runtime.engine, "before_cursor_execute", count)
        try:
            uow.commit()
        finally:
            event.remove(runtime.engine, "before_cursor_execute", count)
    return statements


def test_a_transition_nobody_hears_of_costs_no_statement_and_one_somebody_may_costs_one(api, runtime):
    booking_id, _ = _booked(api, runtime, 4)
    assert len(_statements_at_commit(runtime, booking_id, S.AWAITING_PAYMENT)) == 1
    statements = _statements_at_commit(runtime, booking_id, S.AUTHORIZED)
    assert len(statements) == 2 and "notification_events" in statements[1]
    assert _rows(runtime, "SELECT count(*) FROM notification_events WHERE booking_id = :b", b=booking_id) == [(0,)]
