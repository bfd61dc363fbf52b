"""Scheduled work: expiry, outbox relay after a lost message, and one leader among schedulers."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest
from sqlalchemy import text

from services import expiry
from services.context import Context
from services.outbox import relay
from tasks.broker import make_inspector
from tasks.scheduler import LEADER_LOCK, run_scheduler
from tests.support import (
    BOTH_BROKERS,
    first_event,
    intents_for,
    new_key,
    seat_request,
    stripe_client,
    wait_for,
    wait_for_statuses,
)


def _scalar(runtime, sql: str, **params):
    with runtime.context.sessions() as session:
        return session.execute(text(sql), params).scalar()


def _past_the_holds(ctx: Context) -> Context:
    """The same process a moment after every hold made until now has run out: time is moved by
    the clock the services read, so a slow machine cannot make a hold run out early or late."""
    ahead = ctx.settings.hold_ttl + timedelta(seconds=1)
    return dataclasses.replace(ctx, clock=lambda: datetime.now(UTC) + ahead)


def test_a_hold_past_its_expiry_is_expired_the_seat_freed_and_the_authorization_voided(api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[:1])).json["id"]
    wait_for_statuses(runtime.context.sessions, [booking_id], {"authorized"})

    assert expiry.expire_due_bookings(runtime.context).expired == 0
    assert expiry.expire_due_bookings(_past_the_holds(runtime.context)).expired == 1

    booking = api.get(f"/v1/bookings/{booking_id}").json
    assert booking["status"] == "expired" and booking["reason"] == "hold_expired"
    assert booking["payment"]["status"] == "canceled"
    (intent,) = intents_for(stripe_client(runtime.context.settings.stripe_api_base), booking_id)
    assert intent["status"] == "canceled"
    seat = next(s for s in api.get(f"/v1/events/{event_id}/seats").json["seats"] if s["id"] == str(seats[0]))
    assert seat["status"] == "available"
    assert api.post(f"/v1/bookings/{booking_id}/confirm", key=new_key()).status_code == 409


def test_expiry_racing_confirm_ends_in_one_state_with_consistent_money(api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    ids = [api.book(seat_request(event_id, [seat])).json["id"] for seat in seats[30:50]]
    wait_for_statuses(runtime.context.sessions, ids, {"authorized"})
    # The clients confirm while their holds still run (the API's clock); the sweeps run as if the
    # holds had just run out: every booking is contested, however fast or slow the machine.
    sweeping = _past_the_holds(runtime.context)

    with ThreadPoolExecutor(max_workers=8) as pool:
        confirms = pool.map(lambda b: api.post(f"/v1/bookings/{b}/confirm", key=new_key()).status_code, ids)
        sweeps = [pool.submit(expiry.expire_due_bookings, sweeping) for _ in range(4)]
        answers = list(confirms)
        for sweep in sweeps:
            sweep.result()
    expiry.expire_due_bookings(sweeping)
    final = wait_for_statuses(runtime.context.sessions, ids, {"confirmed", "expired"})

    client = stripe_client(runtime.context.settings.stripe_api_base)
    for booking_id, answer in zip(ids, answers, strict=True):
        (intent,) = intents_for(client, booking_id)
        booking = api.get(f"/v1/bookings/{booking_id}").json
        if final[booking_id] == "confirmed":
            assert answer == 202
            assert intent["status"] == "succeeded"
            assert booking["payment"]["amount_captured"] == booking["total_amount"]
        else:
            assert intent["status"] == "canceled"
            assert booking["payment"]["amount_captured"] == 0


@BOTH_BROKERS
@pytest.mark.commits  # a worker of its own
def test_a_request_whose_message_the_broker_lost_is_processed_once_the_relay_runs(api, runtime, settings):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[60:61])).json["id"]
    inspector = make_inspector(runtime.broker)
    assert sum(q.ready for q in inspector.depths()) == 1, "the API should have enqueued the placement"
    runtime.broker.flush_all()  # the broker lost it after the commit (Redis restarted without persistence)
    assert sum(q.ready for q in inspector.depths()) == 0

    worker = dramatiq.Worker(runtime.broker, worker_threads=2)
    worker.start()
    try:
        # Nothing left in the broker for the worker to run: only the relay can move the booking.
        depths = inspector.depths()
        assert not [q.name for q in depths if q.ready or q.delayed or q.in_flight]
        assert _scalar(runtime, "SELECT status FROM bookings WHERE id = :b", b=booking_id) == "requested"
        sent = relay(runtime.context.sessions, runtime.context.dispatch, older_than=timedelta(0),
                     now=runtime.context.clock())
        assert sent == 1
        wait_for_statuses(runtime.context.sessions, [booking_id], {"authorized"})
        wait_for(lambda: _scalar(runtime, "SELECT count(*) FROM outbox") == 0,
                 what="the outbox row to be acknowledged")
    finally:
        worker.stop()


class StandbyPolls(threading.Event):
    """A scheduler's stop event that counts its waits: a standby waits once after each attempt
    that found the leader's lock taken."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


@pytest.mark.commits  # schedulers in threads, with connections of their own
def test_two_schedulers_elect_one_leader_and_the_standby_takes_over(settings, runtime):
    def leader_pids() -> list[int]:
        with runtime.context.sessions() as session:
            return list(session.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = :k AND granted"
            ), {"k": LEADER_LOCK & 0xFFFFFFFF}).scalars())

    def leaders() -> int:
        return len(leader_pids())

    first_stop, second_stop = threading.Event(), StandbyPolls()
    first = threading.Thread(target=run_scheduler, args=(settings, first_stop), daemon=True)
    first.start()
    wait_for(lambda: leaders() == 1, what="a leader")
    (first_leader,) = leader_pids()
    second = threading.Thread(target=run_scheduler, args=(settings, second_stop), daemon=True)
    second.start()
    wait_for(lambda: second_stop.waits >= 2, what="the second scheduler to find the lock taken twice")
    assert leader_pids() == [first_leader]

    first_stop.set()
    first.join(timeout=10)
    wait_for(lambda: leader_pids() not in ([], [first_leader]), timeout=10, what="the standby to take over")
    assert leaders() == 1
    second_stop.set()
    second.join(timeout=10)
    assert not first.is_alive() and not second.is_alive()


@BOTH_BROKERS
def test_the_relay_leaves_a_busy_queue_alone_until_its_messages_are_stale(api, runtime):
    """No worker runs: the placement waits in the broker, so re-sending it would only double the backlog."""
    event_id, seats = first_event(runtime.context.sessions)
    api.book(seat_request(event_id, seats[61:62]))
    depths = {q.name: q for q in make_inspector(runtime.broker).depths()}
    assert depths["bookings"].ready == 1
    busy = [name for name, q in depths.items() if q.ready or q.delayed or q.in_flight]
    now = runtime.context.clock()

    assert relay(runtime.context.sessions, runtime.context.dispatch, older_than=timedelta(0), now=now,
                 busy_queues=busy) == 0
    assert relay(runtime.context.sessions, runtime.context.dispatch, older_than=timedelta(0),
                 now=now + timedelta(minutes=11), busy_queues=busy) == 1
