"""Expiry at scale, concurrent sweeps, the authorization guard, archival, and schema drift."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import event, text

from db.engine import transaction
from services import expiry, maintenance
from testkit.held_bookings import make_held_bookings
from tests.support import (
    first_event,
    intents_for,
    new_key,
    seat_request,
    statuses,
    stripe_client,
    wait_for,
    wait_for_statuses,
)

# The sweeps void payments from threads of their own, and some tests count commits or race two sweeps.
pytestmark = pytest.mark.commits


@pytest.fixture
def settings(settings, proxy):
    # Stripe calls go through the proxy, which counts them.
    return dataclasses.replace(settings, stripe_api_base=proxy.url)


def _count(runtime, sql: str, **params) -> int:
    with runtime.context.sessions() as session:
        return session.execute(text(sql), params).scalar()


def test_expiring_ten_thousand_holds_uses_bounded_transactions_and_stripe_calls(runtime, proxy, servers):
    now = runtime.context.clock()
    ids = make_held_bookings(runtime.context.sessions, count=10_000, authorized=40,
                             stripe_client=stripe_client(servers.stripe_url), expired_at=now - timedelta(minutes=1))
    commits = []
    event.listen(runtime.engine, "commit", lambda conn: commits.append(1))
    calls_before = len(proxy.forwarded)

    report = expiry.expire_due_bookings(runtime.context, batch_size=500)

    assert report.expired == 10_000 and report.voided == 40
    assert report.batches == 20
    # Two transactions a batch (expire, record voids), one final look that finds nothing.
    assert len(commits) <= 2 * report.batches + 1
    assert len(proxy.forwarded) - calls_before == 40
    assert _count(runtime, "SELECT count(*) FROM bookings WHERE status = 'expired'") == 10_000
    assert _count(runtime, "SELECT count(*) FROM booking_items WHERE holds_inventory") == 0
    assert _count(runtime, "SELECT count(*) FROM payments WHERE status = 'canceled'") == 40
    stripe = stripe_client(servers.stripe_url)
    assert {intents_for(stripe, b)[0]["status"] for b in ids[:3]} == {"canceled"}


def test_bookings_the_sweep_must_leave_do_not_stop_it_expiring_the_rest(runtime):
    # Due by time but not the sweep's to expire: a provider call still to be recorded, a cancel
    # waiting for its worker. More of them than a batch, all sorting before one that is due.
    now = runtime.context.clock()
    ids = sorted(make_held_bookings(runtime.context.sessions, count=9, authorized=0, stripe_client=None,
                                    expired_at=now - timedelta(minutes=1)))
    pending, cancelling, (due,) = ids[:4], ids[4:8], ids[8:]
    with transaction(runtime.context.sessions) as session:
        session.execute(text("UPDATE payments SET step = 'authorize' WHERE booking_id = ANY(:ids)"), {"ids": pending})
        session.execute(text("UPDATE bookings SET cancel_requested_at = :now WHERE id = ANY(:ids)"),
                        {"ids": cancelling, "now": now})

    report = expiry.expire_due_bookings(runtime.context, batch_size=3)

    assert report.expired == 1
    assert _count(runtime, "SELECT count(*) FROM bookings WHERE status = 'expired' AND id = :id", id=due) == 1
    assert _count(runtime, "SELECT count(*) FROM bookings WHERE status = 'expired'") == 1


def test_two_sweeps_at_once_expire_each_booking_once(runtime, servers):
    now = runtime.context.clock()
    make_held_bookings(runtime.context.sessions, count=2_000, authorized=20,
                       stripe_client=stripe_client(servers.stripe_url), expired_at=now - timedelta(minutes=1))
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: expiry.expire_due_bookings(runtime.context, batch_size=200), range(2)))

    assert sum(r.expired for r in reports) == 2_000
    assert sum(r.voided for r in reports) == 20
    assert _count(runtime, "SELECT count(*) FROM booking_transitions WHERE to_status = 'expired'") == 2_000


def _old_authorization(api, runtime, seat_index: int, age: str, *, confirmed: bool = False) -> dict:
    """An authorized booking whose authorization is `age` old (a PostgreSQL interval)."""
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[seat_index:seat_index + 1])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    with runtime.context.sessions.begin() as session:
        session.execute(text("UPDATE payments SET authorized_at = now() - CAST(:age AS interval)"
                             " WHERE booking_id = :b"), {"b": booking["id"], "age": age})
        if confirmed:  # accepted, its capture not carried out yet
            session.execute(text("UPDATE bookings SET confirm_requested_at = now() WHERE id = :b"),
                            {"b": booking["id"]})
    return booking


def test_an_authorization_nearing_seven_days_is_cancelled_before_stripe_voids_it(api, runtime, worker, servers):
    booking = _old_authorization(api, runtime, 0, "6 days 13 hours")

    assert maintenance.guard_old_authorizations(runtime.context) == 1
    final = api.get(f"/v1/bookings/{booking['id']}").json
    assert final["status"] == "expired" and final["reason"] == "authorization_expiring"
    (intent,) = intents_for(stripe_client(servers.stripe_url), booking["id"])
    assert intent["status"] == "canceled"


def test_the_guard_leaves_a_confirmed_authorization_to_its_capture(api, runtime, worker, servers):
    # The client's confirm was accepted and its capture has not gone through yet (Stripe down, say):
    # the guard must not expire the booking the client has confirmed.
    booking = _old_authorization(api, runtime, 2, "6 days 13 hours", confirmed=True)

    assert maintenance.guard_old_authorizations(runtime.context) == 0
    assert api.get(f"/v1/bookings/{booking['id']}").json["status"] == "authorized"
    # The capture is finished the way any accepted confirm not carried out is: by reconciliation.
    maintenance.reconcile_stuck_bookings(runtime.context, older_than=timedelta(0))
    assert api.get(f"/v1/bookings/{booking['id']}").json["status"] == "confirmed"
    (intent,) = intents_for(stripe_client(servers.stripe_url), booking["id"])
    assert intent["status"] == "succeeded"


def test_the_guard_captures_instead_when_configured(api, runtime, worker, servers):
    runtime.context = dataclasses.replace(
        runtime.context, settings=dataclasses.replace(runtime.context.settings, authorization_guard_action="capture")
    )
    booking = _old_authorization(api, runtime, 1, "7 days")
    assert maintenance.guard_old_authorizations(runtime.context) == 1
    assert api.get(f"/v1/bookings/{booking['id']}").json["status"] == "confirmed"


def test_archival_moves_old_terminal_bookings_and_they_stay_readable(api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    ids = [api.book(seat_request(event_id, [seat])).json["id"] for seat in seats[2:5]]
    wait_for_statuses(runtime.context.sessions, ids, {"authorized"})
    old_cancelled, old_confirmed, recent_cancelled = ids
    for booking_id in (old_cancelled, recent_cancelled):
        assert api.post(f"/v1/bookings/{booking_id}/cancel", key=new_key()).status_code == 202
    assert api.post(f"/v1/bookings/{old_confirmed}/confirm", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [old_cancelled, recent_cancelled], {"cancelled"})
    wait_for(lambda: _count(runtime, "SELECT count(*) FROM payments WHERE status = 'canceled'") == 2,
             what="both authorizations to be voided")
    wait_for_statuses(runtime.context.sessions, [old_confirmed], {"confirmed"})
    before = api.get(f"/v1/bookings/{old_cancelled}").json
    with runtime.context.sessions.begin() as session:
        session.execute(text("UPDATE bookings SET updated_at = now() - interval '40 days' WHERE id IN (:a, :b)"),
                        {"a": old_cancelled, "b": old_confirmed})

    assert maintenance.archive_terminal_bookings(runtime.context) == 1
    assert _count(runtime, "SELECT count(*) FROM bookings WHERE id = :b", b=old_cancelled) == 0
    for table in ("booking_items", "booking_transitions", "payments"):
        assert _count(runtime, f"SELECT count(*) FROM {table} WHERE booking_id = :b", b=old_cancelled) == 0
        assert _count(runtime, f"SELECT count(*) FROM archived_{table} WHERE booking_id = :b", b=old_cancelled) >= 1
    assert _count(runtime, "SELECT count(*) FROM bookings WHERE id IN (:a, :b)", a=old_confirmed, b=recent_cancelled) == 2
    after = api.get(f"/v1/bookings/{old_cancelled}").json
    unchanged = {"id", "status", "reason", "history", "payment", "total_amount", "currency", "customer", "created_at"}
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert after["items"] == before["items"]


def test_models_and_migrations_describe_the_same_schema(database_url):
    from alembic import command

    from db.migrate import alembic_config

    command.check(alembic_config(database_url))  # raises if autogenerate would change anything


def test_idempotency_keys_past_their_ttl_are_purged_and_the_key_is_usable_again(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    key = new_key()
    assert api.book(seat_request(event_id, seats[5:6]), key=key).status_code == 202
    with runtime.context.sessions.begin() as session:
        session.execute(text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"))
    assert api.book(seat_request(event_id, seats[6:7]), key=new_key()).status_code == 202  # a fresh key

    assert maintenance.purge_idempotency_keys(runtime.context) == 1
    assert _count(runtime, "SELECT count(*) FROM idempotency_keys") == 1
    # The purged key is forgotten: reusing it is a new request, not a replay or a conflict.
    again = api.book(seat_request(event_id, seats[7:8]), key=key)
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers


def test_reconciliation_moves_past_bookings_that_keep_failing(api, runtime, servers):
    # One stuck booking fails on every try (a void of an intent Stripe does not know); with a
    # batch of one, the next run must reach the other stuck booking rather than retry it again.
    event_id, seats = first_event(runtime.context.sessions)
    failing, lost = (api.book(seat_request(event_id, seats[i:i + 1])).json["id"] for i in (3, 4))  # no worker
    with runtime.context.sessions.begin() as session:
        session.execute(text(
            "UPDATE bookings SET status = 'expired', updated_at = now() - interval '1 hour' WHERE id = :b"
        ), {"b": failing})
        session.execute(text(
            "UPDATE payments SET status = 'authorized', intent_id = 'pi_unknown_to_stripe', step = 'void',"
            " amount_authorized = 100, updated_at = now() - interval '2 hours' WHERE booking_id = :b"
        ), {"b": failing})
        session.execute(text("UPDATE bookings SET updated_at = now() - interval '30 minutes' WHERE id = :b"),
                        {"b": lost})
        session.execute(text("UPDATE payments SET updated_at = now() - interval '1 hour' WHERE booking_id = :b"),
                        {"b": lost})

    for _ in range(2):
        maintenance.reconcile_stuck_bookings(runtime.context, older_than=timedelta(minutes=5), batch_size=1)

    assert statuses(runtime.context.sessions, [lost])[lost] == "authorized"
