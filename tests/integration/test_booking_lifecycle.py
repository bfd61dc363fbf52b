"""Book, hold the card, confirm, cancel: through the API and real workers, checked at Stripe."""

from __future__ import annotations

from typing import Any

from adapters.stripe import captured_amount
from domain import lifecycle
from tests.support import (
    BOTH_BROKERS,
    ApiClient,
    a_resource,
    first_event,
    intents_for,
    new_key,
    seat_request,
    slot_request,
    stripe_client,
    wait_for,
    wait_for_statuses,
)

SETTLED = {str(status) for status in lifecycle.SETTLED}


def _book_and_settle(api: ApiClient, runtime: Any, body: dict[str, Any]) -> dict[str, Any]:
    result = api.book(body)
    assert result.status_code == 202, result.json
    assert result.json["status"] == "requested"
    assert result.headers["Location"] == f"/v1/bookings/{result.json['id']}"
    wait_for_statuses(runtime.context.sessions, [result.json["id"]], SETTLED)
    return api.get(result.headers["Location"]).json


@BOTH_BROKERS
def test_card_booking_is_authorized_with_a_manual_capture_hold(api, runtime, worker, servers):
    event_id, seats = first_event(runtime.context.sessions)
    booking = _book_and_settle(api, runtime, seat_request(event_id, seats[:2]))

    assert booking["status"] == "authorized"
    assert booking["payment"]["amount_authorized"] == booking["total_amount"] > 0
    assert booking["payment"]["amount_captured"] == 0
    assert [h["status"] for h in booking["history"]] == ["requested", "awaiting_payment", "authorized"]
    (intent,) = intents_for(stripe_client(servers.stripe_url), booking["id"])
    assert intent["id"] == booking["payment"]["provider_ref"]
    assert intent["status"] == "requires_capture"
    assert intent["capture_method"] == "manual"
    seat_map = api.get(f"/v1/events/{event_id}/seats").json
    held = {s["id"] for s in seat_map["seats"] if s["status"] == "held"}
    assert held == {str(s) for s in seats[:2]}
    assert seat_map["summary"]["held"] == 2


@BOTH_BROKERS
def test_confirm_captures_the_total(api, runtime, worker, servers):
    event_id, seats = first_event(runtime.context.sessions)
    booking = _book_and_settle(api, runtime, seat_request(event_id, seats[2:3]))

    confirm = api.post(f"/v1/bookings/{booking['id']}/confirm", key=new_key())
    assert confirm.status_code == 202, confirm.json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"})

    confirmed = api.get(f"/v1/bookings/{booking['id']}").json
    assert confirmed["payment"]["amount_captured"] == confirmed["total_amount"]
    (intent,) = intents_for(stripe_client(servers.stripe_url), booking["id"])
    assert intent["status"] == "succeeded"
    assert captured_amount(intent) == confirmed["total_amount"]
    seat = next(s for s in api.get(f"/v1/events/{event_id}/seats").json["seats"] if s["id"] == str(seats[2]))
    assert seat["status"] == "booked"


def test_immediate_capture_confirms_without_a_confirm_call(api, runtime, worker, servers):
    event_id, seats = first_event(runtime.context.sessions)
    booking = _book_and_settle(api, runtime, seat_request(event_id, seats[3:4], capture="immediate"))

    assert booking["status"] == "confirmed"
    assert booking["payment"]["amount_captured"] == booking["total_amount"]
    (intent,) = intents_for(stripe_client(servers.stripe_url), booking["id"])
    assert intent["status"] == "succeeded"


def test_cancel_releases_the_hold_and_the_seat(api, runtime, worker, servers):
    event_id, seats = first_event(runtime.context.sessions)
    booking = _book_and_settle(api, runtime, seat_request(event_id, seats[4:5]))

    cancel = api.post(f"/v1/bookings/{booking['id']}/cancel", key=new_key())
    assert cancel.status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"cancelled"})

    # The inventory is released first; the void at Stripe follows as its own step.
    cancelled = wait_for(lambda: (b := api.get(f"/v1/bookings/{booking['id']}").json)["payment"]["status"]
                         == "canceled" and b, what="the authorization to be voided")
    assert cancelled["reason"] == "cancelled_by_client"
    (intent,) = intents_for(stripe_client(servers.stripe_url), booking["id"])
    assert intent["status"] == "canceled"
    again = _book_and_settle(api, runtime, seat_request(event_id, seats[4:5]))
    assert again["status"] == "authorized"


def test_declined_card_rejects_the_booking_and_frees_the_seat(api, runtime, worker, servers):
    event_id, seats = first_event(runtime.context.sessions)
    booking = _book_and_settle(
        api, runtime, seat_request(event_id, seats[5:6], payment_method="pm_card_chargeCustomerFail")
    )

    assert booking["status"] == "rejected"
    assert booking["reason"] == "payment_declined"
    assert booking["payment"]["amount_authorized"] == 0
    # The declined intent could still be confirmed with another card: it is closed with the booking.
    from tests.support import wait_for

    wait_for(lambda: api.get(f"/v1/bookings/{booking['id']}").json["payment"]["status"] == "canceled")
    (intent,) = intents_for(stripe_client(servers.stripe_url), booking["id"])
    assert intent["status"] == "canceled"
    retry = _book_and_settle(api, runtime, seat_request(event_id, seats[5:6]))
    assert retry["status"] == "authorized"


def test_time_slot_booking_is_priced_by_the_minute(api, runtime, worker):
    resource_id = a_resource(runtime.context.sessions)
    listing = api.get("/v1/resources", category="meeting_room").json["items"]
    resource = next(r for r in listing if r["id"] == str(resource_id))
    window = resource["free_windows"][1]
    starts = window["starts_at"]
    ends = starts.replace("T08:00", "T09:30")
    booking = _book_and_settle(api, runtime, slot_request(resource_id, starts, ends))

    assert booking["status"] == "authorized"
    assert booking["total_amount"] == 90 * resource["rate_per_minute"]
    assert booking["items"][0]["period"]["starts_at"].startswith(starts[:16])
    overlapping = _book_and_settle(api, runtime, slot_request(resource_id, starts.replace("T08:00", "T09:00"), starts.replace("T08:00", "T10:00")))
    assert overlapping["status"] == "rejected" and overlapping["reason"] == "unavailable"
