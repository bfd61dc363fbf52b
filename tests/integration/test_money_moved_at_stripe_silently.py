"""Money moved in Stripe's dashboard whose event never arrives (found by the fault campaign).

Stripe retries a webhook for three days, but an endpoint can be down longer, or an event type
left out of its subscription: the books must still come to equal Stripe's, and a booking must
not keep money it did not sell.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from services.audit import audit_payments
from services.expiry import expire_due_bookings
from services.maintenance import reconcile_stuck_bookings
from tests.support import first_event, seat_request, stripe_client, wait_for, wait_for_statuses


def _authorized(api: Any, runtime: Any, seat_index: int) -> tuple[dict[str, Any], Any]:
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[seat_index:seat_index + 1])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    return api.get(f"/v1/bookings/{booking['id']}").json, stripe_client(runtime.context.settings.stripe_api_base)


def _money(api: Any, booking_id: str) -> tuple[str, int, int]:
    booking = api.get(f"/v1/bookings/{booking_id}").json
    return booking["status"], booking["payment"]["amount_captured"], booking["payment"]["amount_refunded"]


def _later(runtime: Any, hours: int) -> Any:
    context = runtime.context
    return dataclasses.replace(context, clock=lambda: context.clock() + timedelta(hours=hours))


def test_a_hold_captured_at_stripe_without_an_event_is_refunded_when_the_booking_expires(api, runtime, worker):
    booking, stripe = _authorized(api, runtime, 30)
    intent_id = booking["payment"]["provider_ref"]
    stripe.v1.payment_intents.capture(intent_id)  # in the dashboard; its event never comes

    later = _later(runtime, 2)
    assert expire_due_bookings(later).expired == 1
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"expired"})
    reconcile_stuck_bookings(later, older_than=timedelta(0))
    total = booking["total_amount"]
    # The customer paid for a seat the booking released: the money goes back in full.
    wait_for(lambda: _money(api, booking["id"]) == ("expired", total, total), timeout=15,
             what=f"the refund; the booking is {_money(api, booking['id'])}")


def test_a_refund_made_at_stripe_without_an_event_reaches_the_books(app, api, runtime, worker):
    booking, stripe = _authorized(api, runtime, 31)
    intent_id = booking["payment"]["provider_ref"]
    assert api.post(f"/v1/bookings/{booking['id']}/confirm", key="confirm-31").status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"})
    stripe.v1.refunds.create(params={"payment_intent": intent_id, "amount": 500})  # its event never comes

    report = audit_payments(_later(runtime, 1))
    assert report.corrected >= 1 and report.mismatched == 0
    wait_for(lambda: _money(api, booking["id"])[2] == 500, timeout=15,
             what=f"the refund on our books; they say {_money(api, booking['id'])}")
