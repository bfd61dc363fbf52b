"""3-D Secure in card mode, through the real SDK and the local Stripe server's authentication.

A card that needs authentication leaves the booking awaiting payment with the payment
`requires_action`, its client secret and next action exposed for the front end; the customer's
authentication (played with the local server's `_authenticate`) and Stripe's event complete it;
a failed one is a decline the customer may retry; the hold's expiry voids it.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from db.engine import transaction
from db.models import WebhookEndpoint
from services.expiry import expire_due_bookings
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
#: A test card that always asks for authentication.
AUTHENTICATE = "4000002500003155"


def _needs_authentication(api: Any, runtime: Any, seat_index: int) -> dict[str, Any]:
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    method = stripe.v1.payment_methods.create(params={
        "type": "card", "card": {"number": AUTHENTICATE, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    })
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[seat_index:seat_index + 1], payment_method=method.id)).json
    return dict(wait_for(
        lambda: (b := api.get(f"/v1/bookings/{booking['id']}").json)["payment"]["status"] == "requires_action" and b,
        what="the payment to require action",
    ))


def _authenticate(runtime: Any, booking: dict[str, Any], success: bool) -> dict[str, Any]:
    """The customer completes (or fails) the bank's challenge in the front end."""
    return play_at_local_stripe(
        runtime.context.settings.stripe_api_base, f"/v1/payment_intents/{booking['payment']['provider_ref']}/_authenticate",
        client_secret=booking["payment"]["client_secret"], success=str(success).lower(),
    )


def test_a_card_that_needs_authentication_is_handed_to_the_customer_and_then_authorized(app, api, runtime, worker):
    with transaction(runtime.context.sessions) as session:  # the client listens for every event
        client_id = session.execute(text("SELECT id FROM clients ORDER BY created_at DESC LIMIT 1")).scalar_one()
        session.add(WebhookEndpoint(client_id=client_id, url="http://127.0.0.1:9/hook", events=["*"], secret="whsec_x"))
    booking = _needs_authentication(api, runtime, 40)
    assert booking["status"] == "awaiting_payment"
    with runtime.context.sessions() as session:
        told = session.execute(text("SELECT type FROM notification_events WHERE booking_id = :b"),
                               {"b": booking["id"]}).scalars().all()
    assert told == ["booking.payment_action_required"]  # the front end is told to act
    payment = booking["payment"]
    assert payment["client_secret"].startswith(payment["provider_ref"])
    assert payment["next_action"]["type"] == "use_stripe_sdk"

    intent = _authenticate(runtime, booking, success=True)
    assert intent["status"] == "requires_capture"
    event = stripe_event("payment_intent.amount_capturable_updated", intent)
    assert post_webhook(app, event, SECRET).status_code == 200
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    after = api.get(f"/v1/bookings/{booking['id']}").json["payment"]
    assert (after["status"], after["amount_authorized"]) == ("authorized", booking["total_amount"])
    assert "next_action" not in after


def test_a_failed_authentication_is_a_decline_the_customer_may_retry(app, api, runtime, worker):
    booking = _needs_authentication(api, runtime, 41)
    intent = _authenticate(runtime, booking, success=False)
    event = stripe_event("payment_intent.payment_failed", {
        **intent, "last_payment_error": {"code": "payment_intent_authentication_failure"},
    })
    assert post_webhook(app, event, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, event["id"])["outcome"] == "applied"
    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert after["status"] == "awaiting_payment"
    assert after["payment"]["status"] == "failed"
    assert after["payment"]["decline_code"] == "payment_intent_authentication_failure"
    assert after["expires_at"] >= booking["expires_at"]  # kept a while longer for another card

    retry = api.post(f"/v1/bookings/{booking['id']}/payment", {"payment_method": "pm_card_visa"}, key=new_key())
    assert retry.status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})


def test_the_holds_expiry_voids_an_authentication_never_completed(api, runtime, worker):
    booking = _needs_authentication(api, runtime, 42)
    later = dataclasses.replace(runtime.context, clock=lambda: runtime.context.clock() + timedelta(hours=2))
    assert expire_due_bookings(later).expired == 1
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"expired"})
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    wait_for(lambda: stripe.v1.payment_intents.retrieve(booking["payment"]["provider_ref"]).status == "canceled",
             what="the intent voided")
