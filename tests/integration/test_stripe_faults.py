"""A Stripe answer lost after Stripe acted: the retry reuses the idempotency key, one intent results."""

from __future__ import annotations

import dataclasses

import pytest

from testkit.faults import DropResponses
from tests.support import (
    first_event,
    intents_for,
    new_key,
    seat_request,
    stripe_client,
    wait_for,
    wait_for_statuses,
)


@pytest.fixture
def settings(settings, proxy):
    return dataclasses.replace(settings, stripe_api_base=proxy.url)


def _creates(method: str, path: str) -> bool:
    return method == "POST" and path == "/v1/payment_intents"


def test_a_lost_create_answer_is_retried_by_the_sdk_with_the_same_key(api, runtime, worker, proxy, servers):
    rule = proxy.drop(DropResponses(_creates, count=1))
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[:1])).json

    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    assert rule.dropped == 1
    assert proxy.forwarded.count(("POST", "/v1/payment_intents")) == 2
    assert len(intents_for(stripe_client(servers.stripe_url), booking["id"])) == 1


def test_answers_lost_past_the_sdk_retries_are_finished_by_the_actor_retry(api, runtime, worker, proxy, servers):
    # The SDK tries three times (max_network_retries=2); the actor's retry then succeeds.
    rule = proxy.drop(DropResponses(_creates, count=3))
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[1:2])).json

    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"}, timeout=30)
    assert rule.dropped == 3
    assert len(intents_for(stripe_client(servers.stripe_url), booking["id"])) == 1


def test_a_lost_capture_answer_captures_once(api, runtime, worker, proxy, servers):
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[2:3])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    rule = proxy.drop(DropResponses(lambda m, p: m == "POST" and p.endswith("/capture"), count=3))

    assert api.post(f"/v1/bookings/{booking['id']}/confirm", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"}, timeout=30)
    assert rule.dropped == 3
    (intent,) = intents_for(stripe_client(servers.stripe_url), booking["id"])
    assert intent["status"] == "succeeded"
    assert api.get(f"/v1/bookings/{booking['id']}").json["payment"]["amount_captured"] == booking["total_amount"]


def test_a_lost_checkout_session_answer_ends_in_a_session_not_a_reused_key(api, runtime, worker, proxy, servers):
    # The retry, a few seconds on, asks for a session expiring a few seconds later: under the same
    # key Stripe would refuse it as a reused key, and the booking would hold its seat unpaid.
    rule = proxy.drop(DropResponses(lambda m, p: m == "POST" and p == "/v1/checkout/sessions", count=3))
    event_id, seats = first_event(runtime.context.sessions)
    body = seat_request(event_id, seats[3:4])
    body["payment"] = {"mode": "checkout", "capture": "on_confirm"}
    booking = api.book(body).json

    found = wait_for(lambda: api.get(f"/v1/bookings/{booking['id']}").json["payment"].get("checkout_url"),
                     timeout=30, what="a checkout URL")
    assert found and rule.dropped == 3
    assert api.get(f"/v1/bookings/{booking['id']}").json["status"] == "awaiting_payment"
