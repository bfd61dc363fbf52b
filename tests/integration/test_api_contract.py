"""The HTTP contract: authentication, idempotency, errors, ownership, catalog."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, text

from db.models import Booking, OutboxMessage
from tests.support import first_event, new_key, seat_request, wait_for_statuses


def _count(runtime, model) -> int:
    with runtime.context.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_routes_need_a_valid_api_key(app):
    assert app.simulate_get("/v1/events").status_code == 401
    bad = app.simulate_get("/v1/events", headers={"Authorization": "Bearer bk_nope"})
    assert bad.status_code == 401
    assert bad.json["error"]["code"] == "unauthorized"
    assert app.simulate_get("/healthz").status_code == 200


def test_revoked_key_is_refused(api, runtime):
    from db.engine import transaction
    from db.queries.clients import authenticate, revoke_client
    from services.context import utc_now

    with transaction(runtime.context.sessions) as session:
        principal = authenticate(session, api.key)
        revoke_client(session, principal.client_id, utc_now())
    assert api.get("/v1/events").status_code == 401


def test_booking_request_writes_booking_and_outbox_row_in_one_go(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    result = api.book(seat_request(event_id, seats[:1]))
    assert result.status_code == 202
    assert _count(runtime, Booking) == 1
    with runtime.context.sessions() as session:
        row = session.scalars(select(OutboxMessage)).one()
    assert row.actor_name == "place_booking" and row.args == [result.json["id"]]


def test_same_key_and_body_replays_the_first_answer(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    body, key = seat_request(event_id, seats[:1]), new_key()
    first = api.book(body, key=key)
    second = api.book(body, key=key)
    assert second.status_code == first.status_code == 202
    assert second.json == first.json
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _count(runtime, Booking) == 1


def test_same_key_with_another_body_is_refused(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    key = new_key()
    assert api.book(seat_request(event_id, seats[:1]), key=key).status_code == 202
    reused = api.book(seat_request(event_id, seats[1:2]), key=key)
    assert reused.status_code == 422
    assert reused.json["error"]["code"] == "idempotency_key_reused"
    assert _count(runtime, Booking) == 1


def test_keys_are_scoped_per_client(api, other_api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    key = new_key()
    assert api.book(seat_request(event_id, seats[:1]), key=key).status_code == 202
    theirs = other_api.book(seat_request(event_id, seats[1:2]), key=key)
    assert theirs.status_code == 202 and "Idempotent-Replayed" not in theirs.headers
    assert _count(runtime, Booking) == 2


def test_missing_idempotency_key_is_a_400(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    result = api.post("/v1/bookings", seat_request(event_id, seats[:1]))
    assert result.status_code == 400
    assert result.json["error"]["code"] == "idempotency_key_required"
    assert _count(runtime, Booking) == 0


@pytest.mark.commits  # threads at once
def test_concurrent_requests_with_one_key_create_one_booking(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    body, key = seat_request(event_id, seats[:1]), new_key()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: api.book(body, key=key), range(32)))
    assert {r.status_code for r in results} == {202}
    assert len({r.json["id"] for r in results}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == 31
    assert _count(runtime, Booking) == 1


def test_a_retried_cancel_replays_its_answer_after_the_booking_has_moved_on(api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[:1])).json["id"]
    key = new_key()
    first = api.post(f"/v1/bookings/{booking_id}/cancel", key=key)
    assert first.status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking_id], {"cancelled"})
    # Cancelling a cancelled booking is refused, but this is the same request again.
    assert api.post(f"/v1/bookings/{booking_id}/cancel", key=new_key()).status_code == 409
    retried = api.post(f"/v1/bookings/{booking_id}/cancel", key=key)
    assert retried.status_code == 202 and retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json == first.json


@pytest.mark.commits  # a second connection holds the lock
def test_a_retry_replays_without_waiting_for_a_lock_on_the_booking(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[:1])).json["id"]
    key = new_key()
    first = api.post(f"/v1/bookings/{booking_id}/cancel", key=key)
    assert first.status_code == 202
    with runtime.engine.begin() as conn:  # a worker in the middle of this booking's step
        conn.execute(text("SELECT 1 FROM bookings WHERE id = :id FOR NO KEY UPDATE"), {"id": booking_id})
        retried = api.post(f"/v1/bookings/{booking_id}/cancel", key=key)
    assert retried.status_code == 202 and retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json == first.json


def test_another_clients_booking_is_not_found(api, other_api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[:1])).json["id"]
    assert other_api.get(f"/v1/bookings/{booking_id}").status_code == 404
    assert other_api.post(f"/v1/bookings/{booking_id}/cancel", key=new_key()).status_code == 404
    assert other_api.get("/v1/bookings").json["items"] == []


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda b: b.pop("customer"), 422, "validation_error"),
        (lambda b: b.update(seat_ids="A1"), 422, "validation_error"),
        (lambda b: b.update(seat_ids=[]), 422, "validation_error"),
        (lambda b: b["customer"].update(email="not-an-email"), 422, "validation_error"),
        (lambda b: b["payment"].update(mode="cash"), 422, "validation_error"),
        (lambda b: b["payment"].update(payment_method="4242 4242 4242 4242"), 422, "validation_error"),
        (lambda b: b.update(event_id="00000000-0000-0000-0000-000000000000"), 422, "validation_error"),
        (lambda b: b.update(seat_ids=["00000000-0000-0000-0000-000000000000"]), 422, "validation_error"),
        (lambda b: b.update(unexpected=1), 422, "validation_error"),
        (lambda b: b.update(resource_id="00000000-0000-0000-0000-000000000000"), 422, "validation_error"),
    ],
)
def test_invalid_booking_requests_get_a_clear_4xx(api, runtime, mutate, status, code):
    event_id, seats = first_event(runtime.context.sessions)
    body = seat_request(event_id, seats[:1])
    mutate(body)
    result = api.book(body)
    assert result.status_code == status, result.json
    assert result.json["error"]["code"] == code
    assert _count(runtime, Booking) == 0


def test_seats_of_another_event_venue_are_refused(api, runtime):
    from db.engine import transaction
    from db.models import Seat, Venue

    event_id, _ = first_event(runtime.context.sessions)
    with transaction(runtime.context.sessions) as session:
        venue = Venue(name=f"Elsewhere {new_key()}")
        session.add(venue)
        session.flush()
        seat = Seat(venue_id=venue.id, row="A", number=1, tier="standard")
        session.add(seat)
        session.flush()
        seat_id = seat.id
    result = api.book(seat_request(event_id, [seat_id]))
    assert result.status_code == 422
    assert result.json["error"]["details"][0]["code"] == "not_at_event"


def test_slot_ending_before_it_starts_is_refused(api, runtime):
    from tests.support import a_resource, slot_request

    body = slot_request(a_resource(runtime.context.sessions), "2030-01-01T10:00:00Z", "2030-01-01T09:00:00Z")
    result = api.book(body)
    assert result.status_code == 422
    assert _count(runtime, Booking) == 0


def test_malformed_json_oversized_and_wrong_media_type(app, api):
    headers = api.auth(**{"Idempotency-Key": new_key(), "Content-Type": "application/json"})
    malformed = app.simulate_post("/v1/bookings", body="{not json", headers=headers)
    assert malformed.status_code == 400 and malformed.json["error"]["code"] == "malformed_json"
    huge = app.simulate_post("/v1/bookings", body=json.dumps({"x": "a" * 200_000}), headers=headers)
    assert huge.status_code == 413 and huge.json["error"]["code"] == "payload_too_large"
    deep = app.simulate_post("/v1/bookings", body="[" * 50 + "]" * 50, headers=headers)
    assert deep.status_code == 400
    text = app.simulate_post("/v1/bookings", body="hi", headers={**headers, "Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json["error"]["code"] == "unsupported_media_type"


def test_unknown_route_and_bad_ids_are_404_in_our_error_shape(api):
    missing = api.get("/v1/bookings/not-a-uuid")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"
    assert api.get("/v1/bookings/00000000-0000-0000-0000-000000000000").status_code == 404


def test_confirming_a_booking_that_is_not_authorized_is_a_409(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = api.book(seat_request(event_id, seats[:1])).json["id"]
    result = api.post(f"/v1/bookings/{booking_id}/confirm", key=new_key())
    assert result.status_code == 409
    assert result.json["error"]["code"] == "invalid_state"


def test_bookings_list_is_newest_first_and_paginated(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    ids = [api.book(seat_request(event_id, [seat])).json["id"] for seat in seats[:5]]
    page1 = api.get("/v1/bookings", limit=3).json
    page2 = api.get("/v1/bookings", limit=3, cursor=page1["next_cursor"]).json
    assert [b["id"] for b in page1["items"] + page2["items"]] == ids[::-1]
    assert page2["next_cursor"] is None
    assert api.get("/v1/bookings", status="confirmed").json["items"] == []
    assert api.get("/v1/bookings", limit=0).status_code == 400


def test_event_catalog_and_seat_map(api, runtime):
    events = api.get("/v1/events").json["items"]
    assert len(events) >= 2
    event = api.get(f"/v1/events/{events[0]['id']}").json
    assert event["prices"] and event["venue"]["name"]
    seat_map = api.get(f"/v1/events/{events[0]['id']}/seats").json
    assert len(seat_map["seats"]) >= 100
    assert seat_map["summary"]["available"] == len(seat_map["seats"])
    assert set(seat_map["seats"][0]) == {"id", "row", "number", "tier", "price", "status"}


def test_resource_search_by_category_distance_rate_and_free_time(api):
    near = api.get("/v1/resources", near="52.52,13.405", radius_km="5").json["items"]
    assert near and all(r["distance_km"] <= 5 for r in near)
    assert [r["distance_km"] for r in near] == sorted(r["distance_km"] for r in near)
    rooms = api.get("/v1/resources", category="meeting_room", max_rate="35").json["items"]
    assert rooms and all(r["category"] == "meeting_room" and r["rate_per_minute"] <= 35 for r in rooms)
    assert all(set(w) == {"starts_at", "ends_at"} for r in rooms for w in r["free_windows"])
    bad = api.get("/v1/resources", near="north")
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_query"


def test_openapi_document_describes_the_routes(app):
    from openapi_spec_validator import validate

    spec = app.simulate_get("/openapi.json").json
    validate(spec)  # a valid OpenAPI 3.1 document
    assert all("examples" in spec["components"]["schemas"][name] for name in ("BookingOut", "SeatMap", "ErrorOut"))
    assert spec["openapi"].startswith("3.")
    assert {"/v1/bookings", "/v1/bookings/{booking_id}", "/v1/events/{event_id}/seats"} <= set(spec["paths"])
    assert "BookingCreate" in spec["components"]["schemas"]
    docs = app.simulate_get("/docs")
    assert docs.status_code == 200 and 'url: "/openapi.json"' in docs.text
    assert app.simulate_get("/docs/static/swagger-ui-bundle.js").status_code == 200


def test_an_idempotency_key_with_control_characters_is_a_400(app, api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    result = app.simulate_post("/v1/bookings", json=seat_request(event_id, seats[:1]),
                               headers={**api.auth(), "Idempotency-Key": "bad\x00key"})
    assert result.status_code == 400 and result.json["error"]["code"] == "idempotency_key_invalid"


def test_a_body_with_a_byte_order_mark_is_read_and_nan_is_refused(app, api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    headers = {**api.auth(), "Idempotency-Key": new_key(), "Content-Type": "application/json"}
    body = json.dumps(seat_request(event_id, seats[:1])).encode()
    assert app.simulate_post("/v1/bookings", body=b"\xef\xbb\xbf" + body, headers=headers).status_code == 202
    nan = app.simulate_post("/v1/bookings", body=body.replace(b'"pm_card_visa"', b"NaN"),
                            headers={**headers, "Idempotency-Key": new_key()})
    assert nan.status_code == 400 and nan.json["error"]["code"] == "malformed_json"
