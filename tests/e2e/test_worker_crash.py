"""A worker process SIGKILLed in the middle of placing bookings, over real HTTP and processes."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from db.engine import make_engine, make_sessions
from tests.support import (
    BOTH_BROKERS,
    double_claims,
    first_event,
    seat_request,
    stripe_client,
    wait_for_statuses,
)

pytestmark = pytest.mark.slow


@BOTH_BROKERS
def test_killed_worker_leaves_nothing_double_booked_or_unsettled(stack, settings):
    sessions = make_sessions(make_engine(settings.database_url, pool_size=2))
    event_id, seats = first_event(sessions)
    with httpx.Client(base_url=stack.base_url, trust_env=False, timeout=10) as http:
        key = _client_key(sessions)
        headers = {"Authorization": f"Bearer {key}"}
        # 150 requests over 50 seats: three clients want each seat.
        bodies = [seat_request(event_id, [seats[i % 50]]) for i in range(150)]

        def submit(body):
            return http.post("/v1/bookings", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})

        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(submit, bodies))
        assert Counter(r.status_code for r in responses) == {202: 150}
        ids = [r.json()["id"] for r in responses]
        # The backlog is queued before the worker starts, so the kill lands mid-stream.
        worker = stack.start_worker(processes=1, threads=8)

        _wait_until_some_settled(sessions, ids)
        stack.kill_worker(worker)
        from tests.support import statuses

        unsettled_at_kill = sum(s == "requested" for s in statuses(sessions, ids).values())
        assert unsettled_at_kill > 0, "the kill came too late to interrupt anything"
        stack.start_worker(processes=1, threads=8)

        final = wait_for_statuses(sessions, ids, {"authorized", "rejected"}, timeout=120)

    assert Counter(final.values()) == {"authorized": 50, "rejected": 100}
    assert double_claims(sessions) == []
    intents = _intents_by_booking(settings.stripe_api_base, ids)
    assert all(len(found) <= 1 for found in intents.values())
    authorized = {b for b, s in final.items() if s == "authorized"}
    assert {b for b, found in intents.items() if found} == authorized
    assert all(found[0]["status"] == "requires_capture" for b, found in intents.items() if b in authorized)


def _client_key(sessions) -> str:
    from db.engine import transaction
    from db.queries.clients import create_client

    with transaction(sessions) as session:
        return create_client(session, "e2e")[1]


def _wait_until_some_settled(sessions, ids, *, at_least: int = 5, timeout: float = 30) -> None:
    from tests.support import statuses

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        settled = sum(s != "requested" for s in statuses(sessions, ids).values())
        if settled >= at_least:
            return
        time.sleep(0.005)
    raise AssertionError("the worker settled nothing before it was to be killed")


def _intents_by_booking(stripe_url, ids):
    client = stripe_client(stripe_url)
    wanted = {str(i): [] for i in ids}
    for pi in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
        pi = pi.to_dict()
        booking_id = (pi.get("metadata") or {}).get("booking_id")
        if booking_id in wanted:
            wanted[booking_id].append(pi)
    return wanted
