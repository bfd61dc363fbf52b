"""Stripe is the truth, a webhook is a trigger to look.

Each test plays what a real account sees and the fault campaign did not: money moved from
Stripe's dashboard, events about intents that are not the booking's but carry its metadata,
signed events whose amounts Stripe never had, and clients retrying a payment at once. After
each, our books equal Stripe's to the cent.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from testkit.stripe_webhooks import stripe_event
from tests.support import (
    first_event,
    new_key,
    play_at_local_stripe,
    post_webhook,
    seat_request,
    stripe_client,
    wait_for,
    wait_for_ledger,
    wait_for_statuses,
)

SECRET = "whsec_test_secret"


def _authorized(api: Any, runtime: Any, seat_index: int) -> tuple[dict[str, Any], Any]:
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[seat_index:seat_index + 1])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    booking = api.get(f"/v1/bookings/{booking['id']}").json
    return booking, stripe_client(runtime.context.settings.stripe_api_base)


def _money(api: Any, booking_id: str) -> tuple[int, int]:
    payment = api.get(f"/v1/bookings/{booking_id}").json["payment"]
    return payment["amount_captured"], payment["amount_refunded"]


def _stripe_money(stripe: Any, intent_id: str) -> tuple[int, int]:
    charge = stripe.v1.payment_intents.retrieve(intent_id).to_dict()["latest_charge"]
    return (charge["amount"] if charge["captured"] else 0), charge["amount_refunded"]


def test_a_refund_reported_before_the_capture_was_recorded_settles_the_booking(app, api, runtime, worker):
    # Captured and refunded from Stripe's dashboard while the booking was authorized; the refund's
    # event arrives first. It used to livelock the booking (captured 12000, refunded 0 on our books).
    booking, stripe = _authorized(api, runtime, 20)
    intent_id = booking["payment"]["provider_ref"]
    stripe.v1.payment_intents.capture(intent_id)
    stripe.v1.refunds.create(params={"payment_intent": intent_id})
    charge = stripe.v1.payment_intents.retrieve(intent_id).to_dict()["latest_charge"]
    event = stripe_event("charge.refunded", {**charge, "metadata": {"booking_id": booking["id"]}})
    assert post_webhook(app, event, SECRET).status_code == 200

    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"refunded"})
    assert _money(api, booking["id"]) == _stripe_money(stripe, intent_id) == (booking["total_amount"],) * 2
    assert api.get(f"/v1/bookings/{booking['id']}").json["reason"] == "refunded_at_provider"
    # The client's confirm now meets a finished booking instead of a capture that loops.
    assert api.post(f"/v1/bookings/{booking['id']}/confirm", key=new_key()).status_code == 409


def test_a_capture_at_stripe_whose_event_was_lost_is_found_by_the_confirm(app, api, runtime, worker):
    booking, stripe = _authorized(api, runtime, 21)
    intent_id = booking["payment"]["provider_ref"]
    stripe.v1.payment_intents.capture(intent_id)
    stripe.v1.refunds.create(params={"payment_intent": intent_id, "amount": 500})
    assert api.post(f"/v1/bookings/{booking['id']}/confirm", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"})
    wait_for(lambda: _money(api, booking["id"]) == _stripe_money(stripe, intent_id), what="books = Stripe")
    assert _stripe_money(stripe, intent_id) == (booking["total_amount"], 500)


def test_events_about_other_intents_with_the_bookings_metadata_change_nothing(app, api, runtime, worker):
    booking, stripe = _authorized(api, runtime, 22)
    metadata = {"booking_id": booking["id"]}
    cent = stripe.v1.payment_intents.create(params={
        "amount": 100, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True, "metadata": metadata,
    }).to_dict()
    other = stripe.v1.payment_intents.create(params={
        "amount": booking["total_amount"], "currency": "eur", "payment_method": "pm_card_visa",
        "capture_method": "manual", "confirm": True, "metadata": metadata,
    })
    canceled = stripe.v1.payment_intents.cancel(other.id).to_dict()
    refunded_charge = stripe.v1.payment_intents.retrieve(cent["id"]).to_dict()["latest_charge"]
    events = [
        stripe_event("payment_intent.succeeded", cent),
        stripe_event("payment_intent.canceled", canceled),
        stripe_event("charge.refunded", {**refunded_charge, "amount_refunded": 100, "metadata": metadata}),
    ]
    for event in events:
        assert post_webhook(app, event, SECRET).status_code == 200
    for event in events:
        row = wait_for_ledger(runtime.context.sessions, event["id"])
        assert row["outcome"] == "unmatched", row
        assert booking["id"] in row["note"]  # shown to operators: it names a booking it is not about

    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert after["status"] == "authorized"
    assert (after["payment"]["amount_captured"], after["payment"]["amount_refunded"]) == (0, 0)
    live = stripe.v1.payment_intents.retrieve(booking["payment"]["provider_ref"])
    assert live.status == "requires_capture"


def test_a_signed_event_is_a_trigger_and_its_amounts_are_not_trusted(app, api, runtime, worker):
    # Signed, naming the booking's own intent, and false: Stripe holds the money, nothing is captured.
    booking, stripe = _authorized(api, runtime, 23)
    intent_id = booking["payment"]["provider_ref"]
    forged = stripe_event("payment_intent.succeeded", {
        "id": intent_id, "object": "payment_intent", "status": "succeeded", "amount": 1,
        "amount_received": 1, "currency": "jpy", "metadata": {"booking_id": booking["id"]},
    })
    assert post_webhook(app, forged, SECRET).status_code == 200
    row = wait_for_ledger(runtime.context.sessions, forged["id"])
    assert row["outcome"] == "ignored", row  # Stripe's record: authorized, as our books say

    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert after["status"] == "authorized"
    assert after["payment"]["amount_captured"] == 0
    assert after["payment"]["amount_authorized"] == booking["total_amount"]


def test_a_payment_at_stripe_that_is_not_the_bookings_amount_is_a_mismatch_for_an_operator(app, api, runtime, worker):
    # A bug or a tampered record: the intent the booking names is for another amount and currency.
    booking, stripe = _authorized(api, runtime, 24)
    cent = stripe.v1.payment_intents.create(params={
        "amount": 1, "currency": "jpy", "payment_method": "pm_card_visa", "confirm": True,
        "metadata": {"booking_id": booking["id"]},
    }).to_dict()
    with runtime.engine.begin() as conn:
        conn.execute(text("UPDATE payments SET intent_id = :i WHERE booking_id = :b"), {"i": cent["id"], "b": booking["id"]})
    event = stripe_event("payment_intent.succeeded", cent)
    assert post_webhook(app, event, SECRET).status_code == 200
    row = wait_for_ledger(runtime.context.sessions, event["id"])
    assert row["outcome"] == "mismatch" and "jpy" in row["note"]
    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert (after["status"], after["payment"]["amount_captured"]) == ("authorized", 0)


@pytest.mark.commits  # threads at once
def test_concurrent_payment_retries_make_one_attempt_and_refuse_the_rest(api, runtime):
    # No worker runs: the accepted attempt stays accepted-and-not-made while the others arrive.
    event_id, seats = first_event(runtime.context.sessions)
    body = seat_request(event_id, seats[25:26])
    body["payment"] = {"mode": "client", "capture": "on_confirm"}
    booking = api.book(body).json
    from services.advance import advance_booking

    advance_booking(runtime.context, booking["id"])  # the intent the front end would confirm
    methods = ["pm_card_chargeCustomerFail"] * 9 + ["pm_card_visa"]
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(
            lambda method: api.post(f"/v1/bookings/{booking['id']}/payment", {"payment_method": method}, key=new_key()),
            methods,
        ))
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [202] + [409] * 9, codes
    assert {a.json["error"]["code"] for a in answers if a.status_code == 409} == {"invalid_state"}
    with runtime.context.sessions() as session:
        attempt = session.execute(text("SELECT attempt FROM payments WHERE booking_id = :b"), {"b": booking["id"]}).scalar()
    assert attempt == 2  # one attempt accepted, counted once


def _bank(runtime: Any, path: str, **form: str) -> dict[str, Any]:
    """The local server's routes that play the customer's bank."""
    return play_at_local_stripe(runtime.context.settings.stripe_api_base, path, **form)



def test_a_dispute_is_recorded_from_stripes_record_and_a_lost_one_keeps_the_books_equal(app, api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[26:27], capture="immediate")).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"})
    booking = api.get(f"/v1/bookings/{booking['id']}").json
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    intent_id = booking["payment"]["provider_ref"]
    charge = stripe.v1.payment_intents.retrieve(intent_id).to_dict()["latest_charge"]

    dispute = _bank(runtime, f"/v1/charges/{charge['id']}/_dispute", reason="fraudulent")
    # The event claims more than Stripe holds: what is recorded is Stripe's dispute.
    opened = stripe_event("charge.dispute.created", {**dispute, "amount": 1})
    assert post_webhook(app, opened, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, opened["id"])["outcome"] == "applied"
    shown = api.get(f"/v1/bookings/{booking['id']}").json["payment"]["dispute"]
    assert shown == {"status": "needs_response", "amount": booking["total_amount"], "reason": "fraudulent"}

    lost = stripe.v1.disputes.close(dispute["id"]).to_dict()
    closed = stripe_event("charge.dispute.closed", lost)
    assert post_webhook(app, closed, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, closed["id"])["outcome"] == "applied"
    late = stripe_event("charge.dispute.updated", {**dispute, "status": "under_review"}, event_id="evt_late_update")
    assert post_webhook(app, late, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, late["id"])["outcome"] == "ignored"  # Stripe says lost

    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert after["payment"]["dispute"]["status"] == "lost"
    assert after["status"] == "confirmed"
    assert _money(api, booking["id"]) == _stripe_money(stripe, intent_id)
