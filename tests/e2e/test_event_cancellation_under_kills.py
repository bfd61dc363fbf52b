"""An event of 200 bookings cancelled while its worker is SIGKILLed: every booking settles once,
the money equals Stripe's (bench.event_cancellation at a small size, over real processes)."""

from __future__ import annotations

import sys
import time
import uuid

import httpx
import psycopg
import pytest

from bench.event_cancellation import CHECKS, _client, check, make_bookings
from bench.stack import add_arena
from devtools.local_services import spawn, terminate

pytestmark = pytest.mark.slow

BOOKINGS = 200


def test_an_event_cancelled_while_its_worker_is_killed_settles_every_booking_once(stack, settings):
    arena = add_arena(settings.database_url, seats=BOOKINGS)
    try:
        made = make_bookings(settings.database_url, settings.stripe_api_base, arena, BOOKINGS)
        operator_key = _client(settings.database_url, "e2e-box-office", operator=True)[1]
        # Paced as in production; the scheduler relays what a kill left in the outbox.
        stack.env.update(STRIPE_MAX_REQUESTS_PER_SECOND="100", OUTBOX_RELAY_AFTER_SECONDS="5",
                         SCHEDULE_RELAY_SECONDS="2")
        scheduler = spawn([sys.executable, "-m", "cli.main", "scheduler"], log=stack.logs / "scheduler.log",
                          env=stack.env)
        worker = stack.start_worker(processes=1, threads=8)
        try:
            progress = _cancel_and_kill_once(stack.base_url, operator_key, arena.event_ids[0], stack, worker)
        finally:
            terminate(scheduler)
        assert progress == {"bookings": BOOKINGS, "done": BOOKINGS, "failed": 0}
        broken = check(settings.database_url, settings.stripe_api_base, made)
        assert broken == dict.fromkeys(CHECKS, 0)
    finally:
        _drop_arena(settings.database_url, arena.venue_id)


def _cancel_and_kill_once(base_url, operator_key, event_id, stack, worker):
    headers = {"Authorization": f"Bearer {operator_key}"}
    with httpx.Client(base_url=base_url, trust_env=False, timeout=10, headers=headers) as http:
        answer = http.post(f"/v1/events/{event_id}/cancel", headers={"Idempotency-Key": uuid.uuid4().hex})
        assert answer.status_code == 202
        killed, deadline = False, time.monotonic() + 120
        while time.monotonic() < deadline:
            progress = http.get(f"/v1/events/{event_id}").json()["cancellation"]
            if progress["done"] >= BOOKINGS:
                break
            if not killed and progress["done"] >= BOOKINGS // 4:
                assert progress["done"] < BOOKINGS, "the kill came too late to interrupt the fan-out"
                stack.kill_worker(worker)
                stack.start_worker(processes=1, threads=8)
                killed = True
            time.sleep(0.1)
        assert killed
        return http.get(f"/v1/events/{event_id}").json()["cancellation"]


def _drop_arena(database_url, venue_id):
    """The stack truncates the bookings; the arena's catalog rows go too, for the tests that follow."""
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM event_prices WHERE event_id IN (SELECT id FROM events WHERE venue_id = %s)",
                     (venue_id,))
        conn.execute("TRUNCATE bookings, booking_items, booking_transitions, payments, outbox CASCADE")
        conn.execute("DELETE FROM events WHERE venue_id = %s", (venue_id,))
        conn.execute("DELETE FROM seats WHERE venue_id = %s", (venue_id,))
        conn.execute("DELETE FROM venues WHERE id = %s", (venue_id,))
