"""Operators read and search every client's bookings, cancel with a refund of their choosing, and
refund part of a confirmed booking; each action is one more step of the worker pipeline, and
our books equal Stripe's to the cent after each."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from db.engine import transaction
from db.queries.clients import create_client
from tests.support import (
    ApiClient,
    first_event,
    new_key,
    seat_request,
    stripe_client,
    wait_for,
    wait_for_statuses,
)


@pytest.fixture
def operator(app: Any, runtime: Any) -> ApiClient:
    with transaction(runtime.context.sessions) as session:
        _, key = create_client(session, "support-desk", operator=True)
    return ApiClient(app, key)


def _confirmed(api: ApiClient, runtime: Any, seat_index: int) -> dict[str, Any]:
    event_id, seats = first_event(runtime.context.sessions)
    body = seat_request(event_id, seats[seat_index:seat_index + 1], capture="immediate")
    booking = api.book(body).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"})
    return dict(api.get(f"/v1/bookings/{booking['id']}").json)


def _stripe_refunded(runtime: Any, intent_id: str) -> int:
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    return int(stripe.v1.payment_intents.retrieve(intent_id).to_dict()["latest_charge"]["amount_refunded"])


def test_an_operator_reads_and_searches_every_clients_bookings(api, other_api, operator, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    mine = api.book(seat_request(event_id, seats[30:31])).json
    theirs = other_api.book({**seat_request(event_id, seats[31:32]), "customer": {"email": "Grace@Example.com"}}).json
    assert operator.get(f"/v1/bookings/{mine['id']}").status_code == 200
    assert other_api.get(f"/v1/bookings/{mine['id']}").status_code == 404  # clients: their own only

    by_email = operator.get("/v1/bookings", email="grace@example.com").json["items"]
    assert [b["id"] for b in by_email] == [theirs["id"]]
    by_event = {b["id"] for b in operator.get("/v1/bookings", event_id=str(event_id)).json["items"]}
    assert {mine["id"], theirs["id"]} <= by_event
    clients_own = {b["id"] for b in api.get("/v1/bookings", event_id=str(event_id)).json["items"]}
    assert theirs["id"] not in clients_own
    with runtime.context.sessions() as session:
        other_client = session.execute(text("SELECT client_id FROM bookings WHERE id = :b"), {"b": theirs["id"]}).scalar()
    assert api.get("/v1/bookings", client_id=str(other_client)).status_code == 403


@pytest.mark.parametrize(("refund", "refunded_share"), [(None, 1), ("full", 1), ("none", 0)])
def test_an_operator_cancel_refunds_what_the_operator_chose(api, operator, runtime, worker, refund, refunded_share):
    booking = _confirmed(api, runtime, {None: 32, "full": 33, "none": 34}[refund])
    body = {"refund": refund} if refund else None
    assert operator.post(f"/v1/bookings/{booking['id']}/cancel", body, key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"refunded"})
    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert after["reason"] == "cancelled_by_operator"
    expected = booking["total_amount"] * refunded_share
    assert after["payment"]["amount_refunded"] == expected == _stripe_refunded(runtime, booking["payment"]["provider_ref"])


def test_an_operator_cancel_of_a_held_booking_releases_the_hold(api, operator, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[35:36])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    assert operator.post(f"/v1/bookings/{booking['id']}/cancel", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"cancelled"})
    # The void follows the status, in the next transaction, after Stripe answers.
    after = wait_for(lambda: (b := api.get(f"/v1/bookings/{booking['id']}").json)["payment"]["status"] != "authorized"
                     and b, what="the hold voided")
    assert (after["reason"], after["payment"]["status"]) == ("cancelled_by_operator", "canceled")


def test_partial_refunds_add_up_and_the_booking_ends_when_everything_is_refunded(api, operator, runtime, worker):
    booking = _confirmed(api, runtime, 36)
    total, intent_id = booking["total_amount"], booking["payment"]["provider_ref"]
    first, second = total // 4, total // 2
    assert operator.post(f"/v1/bookings/{booking['id']}/refund", {"amount": first}, key=new_key()).status_code == 202
    wait_for(lambda: _stripe_refunded(runtime, intent_id) == first, what="the first refund")
    assert operator.post(f"/v1/bookings/{booking['id']}/refund", {"amount": second}, key=new_key()).status_code == 202
    wait_for(lambda: api.get(f"/v1/bookings/{booking['id']}").json["payment"]["amount_refunded"] == first + second,
             what="the second refund recorded")
    assert _stripe_refunded(runtime, intent_id) == first + second
    assert api.get(f"/v1/bookings/{booking['id']}").json["status"] == "confirmed"

    too_much = operator.post(f"/v1/bookings/{booking['id']}/refund", {"amount": total}, key=new_key())
    assert too_much.status_code == 422 and too_much.json["error"]["code"] == "refund_exceeds_captured"
    rest = total - first - second
    assert operator.post(f"/v1/bookings/{booking['id']}/refund", {"amount": rest}, key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"refunded"})
    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert after["reason"] == "refunded_by_operator"
    assert after["payment"]["amount_refunded"] == total == _stripe_refunded(runtime, intent_id)
    with runtime.context.sessions() as session:
        number = session.execute(text("SELECT refund_number FROM payments WHERE booking_id = :b"), {"b": booking["id"]}).scalar()
    assert number == 3  # three refunds, three idempotency keys


def test_only_operators_refund_and_only_confirmed_bookings(api, operator, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    held = api.book(seat_request(event_id, seats[37:38])).json
    wait_for_statuses(runtime.context.sessions, [held["id"]], {"authorized"})
    assert api.post(f"/v1/bookings/{held['id']}/refund", {"amount": 100}, key=new_key()).status_code == 403
    refused = operator.post(f"/v1/bookings/{held['id']}/refund", {"amount": 100}, key=new_key())
    assert refused.status_code == 409 and refused.json["error"]["code"] == "invalid_state"
