"""Placements that meet at a seat's lock, each race beside its control.

The test holds a seat's row lock itself, so the placements it starts are all inside the race
(queued on that lock) when it lets go, however slow the machine. The protected run must end
clean: one holder, the rest refused, no actor error (so no retry). Its control runs the same
race with one protection switched off and asserts that it goes wrong: without that, a green
race would prove nothing.

The controls switch protections off with monkeypatch on the query the placement service calls.
That mocks nothing external: it removes our own protection, and everything else (PostgreSQL, the
worker threads, Redis) is real.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.queries import catalog, claims
from tests.integration.message_outcomes import (
    DEADLOCK_DETECTED,
    UNIQUE_VIOLATION,
    MessageOutcomes,
    deadlocks_counted,
)
from tests.support import double_claims, first_event, seat_request, wait_for, wait_for_statuses

SETTLED = {"authorized", "rejected"}


@pytest.fixture
def settings(settings: Any) -> Any:
    # The placements wait on the test's lock until all of them are queued; a loaded machine may
    # take seconds to get there, longer than the 2 s lock timeout of production.
    return replace(settings, lock_timeout_ms=60_000)


@contextmanager
def seats_locked(runtime: Any, seat_ids: Sequence[Any]) -> Iterator[None]:
    """Hold the seats' row locks the way a placement does, until the block ends."""
    with runtime.context.sessions.begin() as holder:
        holder.execute(
            text("SELECT id FROM seats WHERE id = ANY(:s) FOR NO KEY UPDATE"), {"s": list(seat_ids)}
        )
        yield


def lock_waiters(runtime: Any) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )))


def queue_on_a_held_seat(api: Any, runtime: Any, held: Sequence[Any], bodies: Sequence[dict[str, Any]]) -> list[str]:
    """Submit the requests while `held` seats are locked; let go once every placement waits."""
    with seats_locked(runtime, held):
        ids = [api.book(body).json["id"] for body in bodies]
        wait_for(lambda: lock_waiters(runtime) >= len(bodies), what=f"{len(bodies)} placements to wait on the seat")
    return ids


def sorted_seats(runtime: Any, count: int, start: int) -> list[Any]:
    event_id, seats = first_event(runtime.context.sessions)
    return sorted(seats[start:start + count])


# The re-check after locking: a claim committed while a placement waited for the seat.

def race_behind_a_held_seat(api: Any, runtime: Any, seat: Any, requests: int = 3) -> list[str]:
    event_id, _ = first_event(runtime.context.sessions)
    return queue_on_a_held_seat(api, runtime, [seat], [seat_request(event_id, [seat]) for _ in range(requests)])


def test_placements_queued_on_a_seats_lock_are_refused_once_the_first_claims_it(api, runtime, worker, outcomes):
    [seat] = sorted_seats(runtime, 1, start=0)
    ids = race_behind_a_held_seat(api, runtime, seat)

    final = wait_for_statuses(runtime.context.sessions, ids, SETTLED)
    assert sorted(final.values()) == ["authorized", "rejected", "rejected"]
    assert double_claims(runtime.context.sessions) == []
    assert outcomes.failures == []


@pytest.mark.control
def test_control_without_the_recheck_queued_placements_hit_the_unique_index(
    api, runtime, worker, outcomes: MessageOutcomes, monkeypatch
):
    monkeypatch.setattr(claims, "seat_holders", lambda session, event_id, seat_ids, now: [])
    [seat] = sorted_seats(runtime, 1, start=1)
    ids = race_behind_a_held_seat(api, runtime, seat)

    violations = wait_for(lambda: outcomes.with_sqlstate(UNIQUE_VIOLATION), what="a unique violation")
    assert "booking_items_one_claim_per_seat" in violations[0].detail
    # The retry hides it: the next try meets the committed claim, and the end state looks right.
    final = wait_for_statuses(runtime.context.sessions, ids, SETTLED)
    assert sorted(final.values()) == ["authorized", "rejected", "rejected"]
    assert double_claims(runtime.context.sessions) == []


# The id order of seat locks: two placements of the same seats, listed in opposite orders,
# each holding its first seat when the test lets go of the seat both want next.

def race_in_opposite_orders(api: Any, runtime: Any, start: int) -> list[str]:
    event_id, _ = first_event(runtime.context.sessions)
    low, middle, high = sorted_seats(runtime, 3, start=start)
    bodies = [seat_request(event_id, [low, middle, high]), seat_request(event_id, [high, middle, low])]
    return queue_on_a_held_seat(api, runtime, [middle], bodies)


def test_placements_of_the_same_seats_in_opposite_orders_do_not_deadlock(api, runtime, worker, outcomes):
    ids = race_in_opposite_orders(api, runtime, start=2)

    final = wait_for_statuses(runtime.context.sessions, ids, SETTLED)
    assert sorted(final.values()) == ["authorized", "rejected"]
    assert outcomes.failures == []


def locks_in_no_agreed_order() -> Any:
    """`lock_seats_of` without its ORDER BY: the first placement locks its seats lowest id
    first, the next highest first, as requests list them (the rest of the query is kept out:
    the re-check after locking still refuses a seat claimed meanwhile)."""
    directions = itertools.cycle(["ASC", "DESC"])

    def lock_seats_of(session: Session, booking_id: Any, now: Any) -> list[Any]:
        seat_ids = session.scalars(text(
            f"SELECT seat_id FROM booking_items WHERE booking_id = :b ORDER BY seat_id {next(directions)}"
        ), {"b": booking_id}).all()
        for seat_id in seat_ids:  # one at a time, as a loop over the request would
            session.execute(text("SELECT id FROM seats WHERE id = :s FOR NO KEY UPDATE"), {"s": seat_id})
        return list(seat_ids)

    return lock_seats_of


@pytest.mark.control
def test_control_seat_locks_taken_in_no_agreed_order_deadlock(
    api, runtime, worker, outcomes: MessageOutcomes, monkeypatch
):
    monkeypatch.setattr(catalog, "lock_seats_of", locks_in_no_agreed_order())
    deadlocks_before = deadlocks_counted(runtime.engine)
    ids = race_in_opposite_orders(api, runtime, start=5)

    wait_for(lambda: outcomes.with_sqlstate(DEADLOCK_DETECTED), what="a deadlock")
    wait_for(lambda: deadlocks_counted(runtime.engine) > deadlocks_before, what="PostgreSQL to count the deadlock")
    # PostgreSQL aborted one, the retry placed it again: the end state alone shows nothing.
    final = wait_for_statuses(runtime.context.sessions, ids, SETTLED)
    assert sorted(final.values()) == ["authorized", "rejected"]
