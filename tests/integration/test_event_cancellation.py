"""An operator cancels an event: no new bookings, every live one cancelled and refunded in full by
workers, the progress on the event, and a second request (or reconciliation) doing nothing twice."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from services.maintenance import reconcile_stuck_bookings
from tests.integration.test_catalog import Operator, _seated_event, operator  # noqa: F401  (the fixture)
from tests.support import new_key, seat_request, stripe_client, wait_for, wait_for_statuses


def _refunded_at_stripe(runtime: Any, intent_id: str) -> int:
    charge = stripe_client(runtime.context.settings.stripe_api_base).v1.payment_intents.retrieve(intent_id).to_dict()
    return int((charge.get("latest_charge") or {}).get("amount_refunded") or 0)


def test_cancelling_an_event_cancels_and_refunds_every_live_booking_once(operator, api, runtime, worker):  # noqa: F811
    event, seats = _seated_event(operator)
    held = [api.book(seat_request(event["id"], [seat])).json["id"] for seat in seats[:3]]
    paid = [api.book(seat_request(event["id"], [seat], capture="immediate")).json["id"] for seat in seats[3:6]]
    wait_for_statuses(runtime.context.sessions, held, {"authorized"})
    wait_for_statuses(runtime.context.sessions, paid, {"confirmed"})

    answer = operator.post(f"/v1/events/{event['id']}/cancel", key=new_key())
    assert answer.status_code == 202 and answer.json["status"] == "cancelled"
    refused = api.book(seat_request(event["id"], seats[6:7]))
    assert refused.status_code == 422 and refused.json["error"]["code"] == "sales_closed"

    wait_for_statuses(runtime.context.sessions, held, {"cancelled"})
    wait_for_statuses(runtime.context.sessions, paid, {"refunded"})
    progress = wait_for(lambda: (p := api.get(f"/v1/events/{event['id']}").json["cancellation"])["done"] == 6 and p,
                        what="the cancellation's progress")
    assert progress == {"bookings": 6, "done": 6, "failed": 0}
    for booking_id in paid:
        booking = api.get(f"/v1/bookings/{booking_id}").json
        assert booking["reason"] == "event_cancelled"
        total = booking["total_amount"]
        assert booking["payment"]["amount_refunded"] == total == _refunded_at_stripe(runtime, booking["payment"]["provider_ref"])
    for booking_id in held:
        assert api.get(f"/v1/bookings/{booking_id}").json["payment"]["status"] == "canceled"

    # Asked again, and reconciliation run: nothing is done twice.
    assert operator.post(f"/v1/events/{event['id']}/cancel", key=new_key()).status_code == 202
    later = dataclasses.replace(runtime.context, clock=lambda: runtime.context.clock() + timedelta(minutes=10))
    reconcile_stuck_bookings(later, older_than=timedelta(0))
    for booking_id in paid:
        booking = api.get(f"/v1/bookings/{booking_id}").json
        assert _refunded_at_stripe(runtime, booking["payment"]["provider_ref"]) == booking["total_amount"]


def test_only_an_operator_cancels_an_event(operator, api):  # noqa: F811
    event, _ = _seated_event(operator)
    refused = api.post(f"/v1/events/{event['id']}/cancel", key=new_key())
    assert refused.status_code == 403
    assert api.get(f"/v1/events/{event['id']}").json["status"] != "cancelled"
