"""Concurrency claims, proven by racing for real and then checking invariants in the database.

Each race also asserts that no actor raised: a deadlock or a constraint violation becomes a
Dramatiq retry, and the final states alone would still look right. The races that meet at a
seat's lock, with their controls, are in test_seat_lock_races.py.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from db.engine import transaction
from db.queries import claims
from services import queues
from services.advance import advance_booking
from services.outbox import StagedMessage
from tests.integration.message_outcomes import EXCLUSION_VIOLATION, LOCK_NOT_AVAILABLE
from tests.support import (
    a_resource,
    double_claims,
    first_event,
    intents_for,
    seat_request,
    slot_request,
    stripe_client,
    wait_for,
    wait_for_statuses,
)

FINAL_OR_HELD = {"authorized", "rejected"}


def _submit_all(api, bodies, workers: int = 32) -> list[str]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(api.book, bodies))
    assert {r.status_code for r in results} == {202}
    return [r.json["id"] for r in results]


def test_two_hundred_requests_for_one_seat_leave_exactly_one_holder(api, runtime, worker, outcomes):
    event_id, seats = first_event(runtime.context.sessions)
    ids = _submit_all(api, [seat_request(event_id, seats[10:11]) for _ in range(200)])

    final = wait_for_statuses(runtime.context.sessions, ids, FINAL_OR_HELD, timeout=120)
    winners = [b for b, status in final.items() if status == "authorized"]
    assert len(winners) == 1
    with runtime.context.sessions() as session:
        reasons = session.execute(text(
            "SELECT reason, count(*) FROM bookings WHERE status = 'rejected' GROUP BY reason"
        )).all()
    assert dict(reasons) == {"unavailable": 199}
    assert double_claims(runtime.context.sessions) == []
    assert len(intents_for(stripe_client(runtime.context.settings.stripe_api_base), winners[0])) == 1
    assert outcomes.failures == []


def _overlapping_slot_requests(api, runtime) -> list[str]:
    resource_id = a_resource(runtime.context.sessions, "studio")
    day = (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    bodies = [
        slot_request(resource_id, (day + timedelta(minutes=i)).isoformat(), (day + timedelta(minutes=60 + i)).isoformat())
        for i in range(50)
    ]
    return _submit_all(api, bodies)


def test_overlapping_requests_on_one_resource_leave_exactly_one_holder(api, runtime, worker, outcomes):
    ids = _overlapping_slot_requests(api, runtime)

    final = wait_for_statuses(runtime.context.sessions, ids, FINAL_OR_HELD, timeout=60)
    assert sorted(final.values()).count("authorized") == 1
    assert double_claims(runtime.context.sessions) == []
    assert outcomes.failures == []


@pytest.mark.control
def test_control_without_the_recheck_overlapping_slots_hit_the_exclusion_constraint(
    api, runtime, worker, outcomes, monkeypatch
):
    # Monkeypatching removes our own re-check after the resource's lock; nothing external is mocked.
    monkeypatch.setattr(claims, "slot_holders", lambda session, resource_id, around, now: [])
    _overlapping_slot_requests(api, runtime)

    violations = wait_for(lambda: outcomes.with_sqlstate(EXCLUSION_VIOLATION), what="an exclusion violation")
    assert "booking_items_no_overlapping_slots" in violations[0].detail
    assert double_claims(runtime.context.sessions) == []  # the backstop held


def test_requests_for_different_seats_all_succeed(api, runtime, worker, outcomes):
    event_id, seats = first_event(runtime.context.sessions)
    ids = _submit_all(api, [seat_request(event_id, [seat]) for seat in seats[20:80]])

    final = wait_for_statuses(runtime.context.sessions, ids, FINAL_OR_HELD, timeout=60)
    assert set(final.values()) == {"authorized"}
    assert outcomes.failures == []


def test_overlapping_multi_seat_requests_never_deadlock_or_double_book(api, runtime, worker, outcomes):
    event_id, seats = first_event(runtime.context.sessions)
    block = seats[90:96]
    # Each request takes 3 of 6 seats, listed in different orders: lock ordering must hold.
    bodies = [seat_request(event_id, [block[i % 6], block[(i + 2) % 6], block[(i + 4) % 6]][:: 1 if i % 2 else -1])
              for i in range(40)]
    ids = _submit_all(api, bodies)

    wait_for_statuses(runtime.context.sessions, ids, FINAL_OR_HELD, timeout=60)
    assert double_claims(runtime.context.sessions) == []
    assert outcomes.failures == []  # no deadlock, no lock timeout, no violation retried away


def test_the_same_booking_message_run_by_many_workers_at_once_makes_one_payment_intent(api, runtime, worker, outcomes):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[100:101])).json["id"]
    duplicate = StagedMessage(uuid.uuid4(), *queues.PLACE_BOOKING, (booking_id,))
    runtime.context.dispatch([duplicate] * 12)

    wait_for_statuses(runtime.context.sessions, [booking_id], {"authorized"})
    intents = intents_for(stripe_client(runtime.context.settings.stripe_api_base), booking_id)
    assert len(intents) == 1
    with runtime.context.sessions() as session:
        history = session.execute(text(
            "SELECT to_status FROM booking_transitions WHERE booking_id = :b ORDER BY at, id"
        ), {"b": booking_id}).scalars().all()
    assert history == ["requested", "awaiting_payment", "authorized"]
    # Copies that found another worker mid-step come back later by design (dramatiq.Retry); nothing else.
    assert outcomes.other_than(dramatiq.Retry) == []


def test_database_refuses_a_second_claim_on_a_seat_even_without_locks(api, runtime):
    """The backstop: with the locking path bypassed, the partial unique index still holds."""
    event_id, seats = first_event(runtime.context.sessions)
    first = api.book(seat_request(event_id, seats[110:111])).json["id"]
    second = api.book(seat_request(event_id, seats[110:111])).json["id"]
    claim = text("UPDATE booking_items SET holds_inventory = true WHERE booking_id = :b")
    with transaction(runtime.context.sessions) as session:
        session.execute(claim, {"b": first})
    with pytest.raises(IntegrityError, match="booking_items_one_claim_per_seat"):
        with transaction(runtime.context.sessions) as session:
            session.execute(claim, {"b": second})


def test_database_refuses_overlapping_slot_claims_even_without_locks(api, runtime):
    resource_id = a_resource(runtime.context.sessions, "car")
    day = (datetime.now(UTC) + timedelta(days=4)).replace(hour=10, minute=0, second=0, microsecond=0)
    first = api.book(slot_request(resource_id, day.isoformat(), (day + timedelta(hours=1)).isoformat())).json["id"]
    second = api.book(slot_request(resource_id, (day + timedelta(minutes=59)).isoformat(),
                                   (day + timedelta(hours=2)).isoformat())).json["id"]
    claim = text("UPDATE booking_items SET holds_inventory = true WHERE booking_id = :b")
    with transaction(runtime.context.sessions) as session:
        session.execute(claim, {"b": first})
    with pytest.raises(IntegrityError, match="booking_items_no_overlapping_slots"):
        with transaction(runtime.context.sessions) as session:
            session.execute(claim, {"b": second})


@pytest.mark.commits  # the lock holder is another connection
def test_a_worker_waits_for_a_held_lock_only_as_long_as_the_lock_timeout(api, runtime):
    """A stuck lock holder turns into a retryable error, not a pile of waiting workers."""
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[115:116])).json["id"]
    with runtime.context.sessions.begin() as holder:
        holder.execute(text("SELECT id FROM bookings WHERE id = :b FOR UPDATE"), {"b": booking_id})
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout") as timed_out:
            advance_booking(runtime.context, uuid.UUID(booking_id))
        waited = time.monotonic() - started
    # The holder still holds the lock: only lock_timeout (2 s by default) ended the wait. No upper
    # bound on the time: a loaded machine may take longer to get there, never less.
    assert timed_out.value.orig.sqlstate == LOCK_NOT_AVAILABLE
    assert waited >= 1.9
    advance_booking(runtime.context, uuid.UUID(booking_id))
    assert api.get(f"/v1/bookings/{booking_id}").json["status"] == "authorized"


@pytest.mark.commits  # the lock holder is another connection
def test_a_request_for_a_seat_already_held_is_refused_without_waiting_for_the_seats_lock(api, runtime):
    """Most requests of a sold-out seat meet a committed claim: they are refused at once, not queued
    on the seat's row lock behind every other placement of that seat."""
    event_id, seats = first_event(runtime.context.sessions)
    holder_id = api.book(seat_request(event_id, seats[116:117])).json["id"]
    advance_booking(runtime.context, uuid.UUID(holder_id))
    assert api.get(f"/v1/bookings/{holder_id}").json["status"] == "authorized"
    late_id = api.book(seat_request(event_id, seats[116:117])).json["id"]
    with runtime.context.sessions.begin() as placement_in_progress:
        placement_in_progress.execute(
            text("SELECT id FROM seats WHERE id = :s FOR NO KEY UPDATE"), {"s": seats[116]}
        )
        # A placement that queued on the lock would end in a lock timeout here: the lock is held
        # until after it returns. Returning at all proves it did not wait, however slow the machine.
        advance_booking(runtime.context, uuid.UUID(late_id))
    late = api.get(f"/v1/bookings/{late_id}").json
    assert (late["status"], late["reason"]) == ("rejected", "unavailable")
