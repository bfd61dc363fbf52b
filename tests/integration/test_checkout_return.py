"""The page Stripe's hosted checkout sends the customer back to (CHECKOUT_RETURN_URL's default)."""

from __future__ import annotations

import uuid

from tests.support import first_event, seat_request


def test_the_return_page_is_served_and_shows_only_the_bookings_status(app, api, runtime):
    page = app.simulate_get("/checkout/return", params={"booking_id": str(uuid.uuid4()), "result": "success"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]

    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[50:51])).json
    status = app.simulate_get("/checkout/return/status", params={"booking_id": booking["id"]})
    assert status.status_code == 200 and status.json == {"status": "requested"}  # nothing else: no auth here
    assert app.simulate_get("/checkout/return/status", params={"booking_id": str(uuid.uuid4())}).status_code == 404
    bad = app.simulate_get("/checkout/return/status", params={"booking_id": "nope"})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_query"


def test_the_default_return_address_is_the_page_the_service_serves(settings):
    from config.settings import DEFAULT_CHECKOUT_RETURN_URL

    assert DEFAULT_CHECKOUT_RETURN_URL.endswith("/checkout/return")
