"""The catalog operators run: venues, events, sale windows, blocked seats, resources with weekly
hours, through the HTTP API and real workers. Objects made here start months after the demo
events, so tests that take the first demo event never meet them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import text

from db.engine import transaction
from db.queries.clients import create_client
from tests.support import (
    ApiClient,
    intents_for,
    new_key,
    seat_request,
    slot_request,
    stripe_client,
    wait_for_statuses,
)

SETTLED = {"authorized", "rejected", "confirmed"}


class Operator(ApiClient):
    def patch(self, path: str, body: Any, *, key: str | None = None) -> falcon.testing.Result:
        return self.app.simulate_patch(path, json=body, headers=self.auth(**{"Idempotency-Key": key or new_key()}))

    def create(self, path: str, body: Any) -> dict[str, Any]:
        result = self.post(path, body, key=new_key())
        assert result.status_code == 201, result.json
        return result.json


@pytest.fixture
def operator(app: falcon.testing.TestClient, runtime: Any) -> Operator:
    with transaction(runtime.context.sessions) as session:
        _, key = create_client(session, "box-office", operator=True)
    return Operator(app, key)


def _at(days: float, hour: int = 19) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


def _venue(operator: Operator, seats: int = 12, **extra: Any) -> dict[str, Any]:
    layout = [{"section": "Stalls", "row": "A", "number": n, "tier": "standard"} for n in range(1, seats + 1)]
    return operator.create("/v1/venues", {"name": f"Hall {new_key()[:6]}", "timezone": "Europe/Berlin",
                                          "seats": layout, **extra})


def _event(operator: Operator, days: float = 200, **fields: Any) -> dict[str, Any]:
    body = {"name": f"Show {new_key()[:6]}", "starts_at": _at(days).isoformat(),
            "ends_at": (_at(days) + timedelta(hours=2)).isoformat(), "currency": "EUR", **fields}
    return operator.create("/v1/events", body)


def _seated_event(operator: Operator, **fields: Any) -> tuple[dict[str, Any], list[str]]:
    venue = _venue(operator)
    event = _event(operator, venue_id=venue["id"], prices={"standard": 5000}, **fields)
    seats = [s["id"] for s in operator.get(f"/v1/events/{event['id']}/seats").json["seats"]]
    return event, seats


def _general_event(operator: Operator, capacity: int, **fields: Any) -> dict[str, Any]:
    return _event(operator, days=300, capacity=capacity, prices={"general": 2500}, **fields)


def _places(event_id: str, quantity: int) -> dict[str, Any]:
    return {"event_id": event_id, "quantity": quantity, "customer": {"email": "gig@example.com"},
            "payment": {"mode": "card", "payment_method": "pm_card_visa"}}


# Venues and events.


def test_an_operator_creates_a_venue_with_sections_and_a_client_key_may_only_read_it(operator, api):
    venue = _venue(operator, seats=30, ref=f"hall-{new_key()}")
    assert venue["seat_count"] == 30 and venue["timezone"] == "Europe/Berlin"
    assert api.get(f"/v1/venues/{venue['id']}").json == venue
    refused = api.post("/v1/venues", {"name": "Mine", "timezone": "UTC", "seats": [{"row": "A", "number": 1, "tier": "x"}]},
                       key=new_key())
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    again = operator.post("/v1/venues", {"name": "Other", "timezone": "UTC", "ref": venue["ref"],
                                         "seats": [{"row": "A", "number": 1, "tier": "x"}]}, key=new_key())
    assert again.status_code == 409 and again.json["error"]["code"] == "ref_taken"


def test_a_repeated_venue_request_is_answered_from_its_key_and_creates_one_venue(operator):
    body = {"name": f"Hall {new_key()}", "timezone": "UTC", "seats": [{"row": "A", "number": 1, "tier": "x"}]}
    key = new_key()
    first, second = operator.post("/v1/venues", body, key=key), operator.post("/v1/venues", body, key=key)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true" and second.json == first.json
    other = operator.post("/v1/venues", {**body, "name": "changed"}, key=key)
    assert other.status_code == 422 and other.json["error"]["code"] == "idempotency_key_reused"


def test_a_seat_listed_twice_or_an_unknown_time_zone_is_refused(operator):
    seat = {"row": "A", "number": 1, "tier": "x"}
    assert operator.post("/v1/venues", {"name": "H", "timezone": "UTC", "seats": [seat, seat]}, key=new_key()).status_code == 422
    assert operator.post("/v1/venues", {"name": "H", "timezone": "Mars/Olympus", "seats": [seat]}, key=new_key()).status_code == 422


def test_venues_events_and_resources_are_paged_with_cursors(operator, api):
    for _ in range(3):
        _venue(operator, seats=1)
    seen: list[str] = []
    cursor = None
    while True:
        page = api.get("/v1/venues", limit=2, **({"cursor": cursor} if cursor else {})).json
        seen += [v["id"] for v in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 4
    events = api.get("/v1/events", limit=1).json
    assert len(events["items"]) == 1 and events["next_cursor"]
    following = api.get("/v1/events", limit=1, cursor=events["next_cursor"]).json["items"]
    assert following and following[0]["starts_at"] >= events["items"][0]["starts_at"]
    resources = api.get("/v1/resources", limit=5).json
    assert len(resources["items"]) == 5 and resources["next_cursor"]
    rest = api.get("/v1/resources", limit=100, cursor=resources["next_cursor"]).json["items"]
    assert not {r["id"] for r in rest} & {r["id"] for r in resources["items"]}
    bad = api.get("/v1/events", cursor="not-a-cursor")
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_cursor"


def test_an_event_outside_its_sale_window_is_refused_at_once(operator, api):
    later = _seated_event(operator, sales_start_at=_at(100).isoformat())
    event, seats = later
    assert event["status"] == "scheduled"
    refused = api.book(seat_request(event["id"], seats[:1]))
    assert refused.status_code == 422 and refused.json["error"]["code"] == "sales_closed"
    closed, seats = _seated_event(operator, sales_start_at=_at(-3).isoformat(), sales_end_at=_at(-1).isoformat())
    assert closed["status"] == "sales_closed"
    assert api.book(seat_request(closed["id"], seats[:1])).json["error"]["code"] == "sales_closed"


def test_a_changed_price_leaves_bookings_made_at_the_old_price(operator, api, runtime, worker):
    event, seats = _seated_event(operator)
    booked = api.book(seat_request(event["id"], seats[:1])).json
    changed = operator.patch(f"/v1/events/{event['id']}", {"prices": {"standard": 7000}, "name": "Renamed"})
    assert changed.status_code == 200 and changed.json["prices"] == {"standard": 7000}
    wait_for_statuses(runtime.context.sessions, [booked["id"]], SETTLED)
    assert api.get(f"/v1/bookings/{booked['id']}").json["total_amount"] == 5000
    assert api.book(seat_request(event["id"], seats[1:2])).json["total_amount"] == 7000


def test_the_booking_names_the_event_its_venue_and_start(operator, api):
    event, seats = _seated_event(operator)
    booking = api.book(seat_request(event["id"], seats[:1])).json
    assert booking["event"]["name"] == event["name"] and booking["event"]["starts_at"] == event["starts_at"]
    assert booking["event"]["venue"]["name"] == event["venue"]["name"]
    assert api.get(f"/v1/bookings/{booking['id']}").json["event"] == booking["event"]


# Sale rules again at placement.


@pytest.mark.commits  # workers or threads of its own must see its writes
def test_a_sale_that_closes_before_placement_rejects_the_booking_without_touching_the_card(operator, api, runtime, worker_later):
    event, seats = _seated_event(operator)
    booking = api.book(seat_request(event["id"], seats[:1])).json
    closed = operator.patch(f"/v1/events/{event['id']}", {"sales_start_at": _at(-2).isoformat(),
                                                          "sales_end_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()})
    assert closed.status_code == 200 and closed.json["status"] == "sales_closed"
    worker_later()
    final = wait_for_statuses(runtime.context.sessions, [booking["id"]], SETTLED)
    assert final[booking["id"]] == "rejected"
    assert api.get(f"/v1/bookings/{booking['id']}").json["reason"] == "sales_closed"
    assert intents_for(stripe_client(runtime.context.settings.stripe_api_base), booking["id"]) == []


@pytest.fixture
def worker_later(runtime: Any):  # type: ignore[no-untyped-def]
    """A Dramatiq worker started when the test says so (after it changed the catalog)."""
    import dramatiq

    started: list[dramatiq.Worker] = []

    def start() -> None:
        worker = dramatiq.Worker(runtime.broker, worker_threads=4, worker_timeout=100)
        worker.start()
        started.append(worker)

    yield start
    for worker in started:
        worker.stop()


# Seat maps.


def test_a_seat_map_lists_every_seat_in_order_with_its_price_and_the_counts(operator, api):
    """PostgreSQL writes the map: its JSON is what the API's shape says, seat by seat."""
    layout = [{"row": row, "number": n, "tier": tier, **({"section": section} if section else {})}
              for section, tier in (("", "standard"), ("Balcony", "box"), ("Stalls", "standard"))
              for row in ("B", "A") for n in (2, 1)]
    venue = operator.create("/v1/venues", {"name": f"Hall {new_key()[:6]}", "timezone": "UTC", "seats": layout})
    event = _event(operator, venue_id=venue["id"], prices={"standard": 4000})
    answer = api.get(f"/v1/events/{event['id']}/seats")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    seat_map = answer.json
    assert set(seat_map) == {"event_id", "seats", "summary"} and seat_map["event_id"] == event["id"]
    shown = [(s.get("section", ""), s["row"], s["number"], s["tier"], s["price"], s["status"]) for s in seat_map["seats"]]
    assert shown == [(section, row, n, tier, 4000 if tier == "standard" else None, "available")
                     for section, tier in (("", "standard"), ("Balcony", "box"), ("Stalls", "standard"))
                     for row in ("A", "B") for n in (1, 2)]
    assert set(seat_map["seats"][0]) == {"id", "row", "number", "tier", "price", "status"}
    assert set(seat_map["seats"][-1]) == {"section", "id", "row", "number", "tier", "price", "status"}
    assert seat_map["summary"] == {"available": 12, "held": 0, "booked": 0, "blocked": 0, "total": 12}
    general = _general_event(operator, capacity=3)
    assert api.get(f"/v1/events/{general['id']}/seats").json == {
        "event_id": general["id"], "seats": [],
        "summary": {"available": 0, "held": 0, "booked": 0, "blocked": 0, "total": 0},
    }
    assert api.get(f"/v1/events/{uuid.uuid4()}/seats").status_code == 404


# Blocked seats.


def test_a_blocked_seat_shows_blocked_and_is_never_sold_and_a_held_seat_cannot_be_blocked(operator, api, runtime, worker):
    event, seats = _seated_event(operator)
    blocked = operator.post(f"/v1/events/{event['id']}/seats/block", {"seat_ids": seats[:1]}, key=new_key())
    assert blocked.status_code == 200
    seat_map = api.get(f"/v1/events/{event['id']}/seats").json
    assert seat_map["seats"][0]["status"] == "blocked" and seat_map["summary"]["blocked"] == 1
    assert seat_map["seats"][0]["section"] == "Stalls"
    refused = api.book(seat_request(event["id"], seats[:1])).json
    held = api.book(seat_request(event["id"], seats[1:2])).json
    final = wait_for_statuses(runtime.context.sessions, [refused["id"], held["id"]], SETTLED)
    assert final == {refused["id"]: "rejected", held["id"]: "authorized"}

    conflict = operator.post(f"/v1/events/{event['id']}/seats/block", {"seat_ids": seats[1:3]}, key=new_key())
    assert conflict.status_code == 409 and conflict.json["error"]["code"] == "seat_held"
    assert api.get(f"/v1/events/{event['id']}/seats").json["seats"][2]["status"] == "available"
    assert operator.post(f"/v1/events/{event['id']}/seats/unblock", {"seat_ids": seats[:1]}, key=new_key()).status_code == 200
    assert api.get(f"/v1/events/{event['id']}/seats").json["seats"][0]["status"] == "available"


# Resources with weekly hours.

BERLIN_HOURS = {day: [["09:00", "12:00"], ["13:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def _resource(operator: Operator, **fields: Any) -> dict[str, Any]:
    return operator.create("/v1/resources", {
        "name": f"Dr. {new_key()[:6]}", "category": "test_clinic", "rate_per_minute": 100, "currency": "EUR",
        "timezone": "Europe/Berlin", "weekly_hours": BERLIN_HOURS, **fields,
    })


def _berlin(days: int, hour: int, minute: int = 0) -> datetime:
    from zoneinfo import ZoneInfo

    day = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo("Europe/Berlin"))


def test_free_windows_follow_weekly_hours_in_the_resources_time_zone(operator, api):
    resource = _resource(operator, exceptions=[{"date": _berlin(3, 0).date().isoformat(), "hours": []}])
    shown = api.get(f"/v1/resources/{resource['id']}").json["free_windows"]
    starts = {datetime.fromisoformat(w["starts_at"]) for w in shown}
    assert _berlin(2, 13) in starts and _berlin(2, 9) in starts
    assert not any(_berlin(3, 0) <= s < _berlin(4, 0) for s in starts)  # closed that day


@pytest.mark.parametrize(("days", "hour", "minute", "length", "code"), [
    (-1, 10, 0, 60, "too_soon"),
    (0, 0, 0, 30, "too_soon"),  # inside the two hours' notice, or past
    (40, 10, 0, 60, "too_far_ahead"),
    (2, 10, 10, 60, "off_granularity"),
    (2, 11, 30, 60, "outside_availability"),  # across the lunch break
])
def test_a_slot_breaking_a_rule_is_refused_with_the_rules_code(operator, api, days, hour, minute, length, code):
    resource = _resource(operator, min_notice_minutes=120, max_advance_days=30, granularity_minutes=15)
    starts = _berlin(days, hour, minute) if days or hour else datetime.now(UTC) + timedelta(minutes=30)
    starts = starts.replace(second=0, microsecond=0)
    result = api.book(slot_request(resource["id"], starts.isoformat(), (starts + timedelta(minutes=length)).isoformat()))
    assert result.status_code == 422 and result.json["error"]["code"] == code, result.json


def test_the_buffer_keeps_a_gap_after_another_booking(operator, api, runtime, worker):
    resource = _resource(operator, buffer_minutes=15)
    first = api.book(slot_request(resource["id"], _berlin(2, 9).isoformat(), _berlin(2, 10).isoformat())).json
    assert first["resource"] == {"id": resource["id"], "name": resource["name"], "timezone": "Europe/Berlin"}
    wait_for_statuses(runtime.context.sessions, [first["id"]], {"authorized"})
    touching = api.book(slot_request(resource["id"], _berlin(2, 10).isoformat(), _berlin(2, 11).isoformat())).json
    after_buffer = api.book(slot_request(resource["id"], _berlin(2, 10, 15).isoformat(), _berlin(2, 11).isoformat())).json
    wait_for_statuses(runtime.context.sessions, [touching["id"], after_buffer["id"]], SETTLED)
    touched = api.get(f"/v1/bookings/{touching['id']}").json
    assert (touched["status"], touched["reason"]) == ("rejected", "unavailable")
    assert api.get(f"/v1/bookings/{after_buffer['id']}").json["status"] == "authorized"
    shown = api.get(f"/v1/resources/{resource['id']}").json["free_windows"]
    assert {"starts_at": _berlin(2, 11, 15).astimezone(UTC).isoformat(),
            "ends_at": _berlin(2, 12).astimezone(UTC).isoformat()} in shown


@pytest.mark.commits  # workers or threads of its own must see its writes
def test_hours_changed_before_placement_reject_the_slot(operator, api, runtime, worker_later):
    resource = _resource(operator)
    booking = api.book(slot_request(resource["id"], _berlin(5, 15).isoformat(), _berlin(5, 16).isoformat())).json
    changed = operator.patch(f"/v1/resources/{resource['id']}", {"weekly_hours": {
        day: [["09:00", "12:00"]] for day in BERLIN_HOURS}})
    assert changed.status_code == 200 and changed.json["weekly_hours"]["mon"] == [["09:00", "12:00"]]
    worker_later()
    wait_for_statuses(runtime.context.sessions, [booking["id"]], SETTLED)
    answer = api.get(f"/v1/bookings/{booking['id']}").json
    assert (answer["status"], answer["reason"]) == ("rejected", "outside_availability")


# General admission.


def test_general_admission_sells_places_and_shows_what_is_left(operator, api, runtime, worker):
    event = _general_event(operator, capacity=5)
    assert (event["kind"], event["capacity"], event["available"]) == ("general_admission", 5, 5)
    booking = api.book(_places(event["id"], 3)).json
    assert booking["total_amount"] == 7500 and booking["items"][0]["quantity"] == 3
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    too_many = api.book(_places(event["id"], 3)).json
    assert wait_for_statuses(runtime.context.sessions, [too_many["id"]], SETTLED) == {too_many["id"]: "rejected"}
    shown = api.get(f"/v1/events/{event['id']}").json
    assert (shown["held"], shown["sold"], shown["available"]) == (3, 0, 2)
    assert api.book({**_places(event["id"], 1), "seat_ids": [str(uuid.uuid4())]}).status_code == 422


def test_many_concurrent_requests_for_the_last_ten_places_leave_exactly_ten_held(operator, api, runtime, worker):
    from concurrent.futures import ThreadPoolExecutor

    event = _general_event(operator, capacity=10)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(api.book, [_places(event["id"], 1) for _ in range(120)]))
    ids = [r.json["id"] for r in results]
    final = wait_for_statuses(runtime.context.sessions, ids, SETTLED, timeout=120)
    assert sorted(final.values()).count("authorized") == 10
    with runtime.context.sessions() as session:
        claimed = session.execute(text(
            "SELECT coalesce(sum(quantity), 0) FROM booking_items WHERE event_id = :e AND holds_inventory"
        ), {"e": event["id"]}).scalar()
    assert claimed == 10


@pytest.mark.commits  # workers or threads of its own must see its writes
@pytest.mark.parametrize(("locked", "backstop"), [
    pytest.param(True, True, id="with the event lock"),
    pytest.param(False, True, id="control: lock switched off, the database refuses", marks=pytest.mark.control),
    pytest.param(False, False, id="control: lock and backstop switched off", marks=pytest.mark.control),
])
def test_placements_that_all_count_before_any_claims_never_oversell(operator, api, runtime, monkeypatch, locked, backstop):
    """Twelve placements for the last four places, made to count at the same moment: with the
    event's row lock they take turns and exactly four are held. With the lock switched off every
    one of them sees four free places, and the database's check of the places claimed against
    the capacity refuses all but four: clean rejections, no error. With its triggers switched
    off too, more than four are held (the race is real)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from db.queries import catalog, claims
    from db.unit_of_work import UnitOfWork
    from services.placement import hold_inventory

    event = _general_event(operator, capacity=4)
    ids = [api.book(_places(event["id"], 1)).json["id"] for _ in range(12)]
    together = threading.Barrier(len(ids))
    # With the lock, the first to count holds it at the barrier until the wait times out (well
    # inside the 2 s lock timeout of those queued behind it); without, all arrive at once.
    patience = 0.3 if locked else 10
    counted, claim_places = claims.places_of, UnitOfWork.claim_places
    seen_free: list[int] = []
    refused_by_the_database: list[str] = []

    def places_of_after_all_counted(session, event_ids, now):  # type: ignore[no-untyped-def]
        places = counted(session, event_ids, now)
        seen_free.append(places[event_ids[0]].available)
        try:
            together.wait(timeout=patience)
        except threading.BrokenBarrierError:
            pass
        return places

    def claim_places_watched(uow, claimant):  # type: ignore[no-untyped-def]
        claimed = claim_places(uow, claimant)
        if not claimed:
            refused_by_the_database.append(str(claimant.id))
        return claimed

    monkeypatch.setattr(claims, "places_of", places_of_after_all_counted)
    monkeypatch.setattr(UnitOfWork, "claim_places", claim_places_watched)
    if not locked:
        monkeypatch.setattr(catalog, "lock_event", lambda session, event_id: catalog.event_for_sale(session.connection(), event_id))

    def place(booking_id: str) -> None:
        with UnitOfWork(runtime.context.sessions) as uow:
            if not backstop:  # this transaction's triggers off: the places claimed are not counted
                uow.session.execute(text("SET LOCAL session_replication_role = replica"))
            locked_booking = uow.lock(uuid.UUID(booking_id))
            assert locked_booking is not None
            hold_inventory(uow, locked_booking, now=runtime.context.clock(), hold_ttl=timedelta(minutes=15))
            uow.commit()

    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        list(pool.map(place, ids))  # re-raises any error of a placement
    final = wait_for_statuses(runtime.context.sessions, ids, {"awaiting_payment", "rejected"})
    held = sorted(final.values()).count("awaiting_payment")
    if not backstop:
        assert held > 4
        return
    assert held == 4
    if not locked:
        assert seen_free == [4] * 12  # every placement counted four free places
        assert sorted(refused_by_the_database) == sorted(i for i, status in final.items() if status == "rejected")
        assert len(refused_by_the_database) == 8
    with runtime.context.sessions() as session:
        reasons = session.execute(text("SELECT DISTINCT reason FROM bookings WHERE id = ANY(:ids) AND status = 'rejected'"),
                                  {"ids": [uuid.UUID(i) for i in ids]}).scalars().all()
        shown = session.execute(text("SELECT places_claimed FROM events WHERE id = :e"), {"e": event["id"]}).scalar()
    assert reasons == ["unavailable"] and shown == 4


def test_the_database_refuses_general_admission_claims_past_the_capacity_even_without_locks(operator, api, runtime):
    """The backstop alone: claims written straight to the items, as wrong code would."""
    from sqlalchemy.exc import IntegrityError

    event = _general_event(operator, capacity=3)
    first, second = (api.book(_places(event["id"], quantity)).json["id"] for quantity in (2, 2))
    claim = text("UPDATE booking_items SET holds_inventory = :claims WHERE booking_id = :b")
    with transaction(runtime.context.sessions) as session:
        session.execute(claim, {"b": first, "claims": True})
    with pytest.raises(IntegrityError, match="event_places_within_capacity"):
        with transaction(runtime.context.sessions) as session:
            session.execute(claim, {"b": second, "claims": True})
    with transaction(runtime.context.sessions) as session:  # freed, the places pass to the other
        session.execute(claim, {"b": first, "claims": False})
        session.execute(claim, {"b": second, "claims": True})
        assert session.execute(text("SELECT places_claimed FROM events WHERE id = :e"), {"e": event["id"]}).scalar() == 2


# Lapsed holds.


def _lapse(runtime: Any, booking_id: str) -> None:
    with transaction(runtime.context.sessions) as session:
        session.execute(text("UPDATE bookings SET expires_at = now() - interval '1 second' WHERE id = :b"),
                        {"b": booking_id})


def test_a_lapsed_hold_is_shown_free_and_booked_at_once_and_its_authorization_is_voided(operator, api, runtime, worker):
    event, seats = _seated_event(operator)
    first = api.book(seat_request(event["id"], seats[:1])).json
    wait_for_statuses(runtime.context.sessions, [first["id"]], {"authorized"})
    assert api.get(f"/v1/events/{event['id']}/seats").json["seats"][0]["status"] == "held"
    _lapse(runtime, first["id"])
    assert api.get(f"/v1/events/{event['id']}/seats").json["seats"][0]["status"] == "available"

    second = api.book(seat_request(event["id"], seats[:1])).json
    final = wait_for_statuses(runtime.context.sessions, [first["id"], second["id"]], {"authorized", "expired"})
    assert final == {first["id"]: "expired", second["id"]: "authorized"}
    lapsed = api.get(f"/v1/bookings/{first['id']}").json
    assert lapsed["reason"] == "hold_expired"
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    wait_for_statuses(runtime.context.sessions, [first["id"]], {"expired"})
    from tests.support import wait_for

    wait_for(lambda: intents_for(stripe, first["id"])[0]["status"] == "canceled", what="the lapsed hold's void")


def test_lapsed_places_and_slots_are_bookable_at_once(operator, api, runtime, worker):
    event = _general_event(operator, capacity=2)
    resource = _resource(operator)
    gone = [api.book(_places(event["id"], 2)).json["id"],
            api.book(slot_request(resource["id"], _berlin(3, 9).isoformat(), _berlin(3, 10).isoformat())).json["id"]]
    wait_for_statuses(runtime.context.sessions, gone, {"authorized"})
    for booking_id in gone:
        _lapse(runtime, booking_id)
    assert api.get(f"/v1/events/{event['id']}").json["available"] == 2
    again = [api.book(_places(event["id"], 1)).json["id"],
             api.book(slot_request(resource["id"], _berlin(3, 9).isoformat(), _berlin(3, 10).isoformat())).json["id"]]
    assert set(wait_for_statuses(runtime.context.sessions, again, SETTLED).values()) == {"authorized"}
    assert set(wait_for_statuses(runtime.context.sessions, gone, {"expired"}).values()) == {"expired"}


def test_a_null_in_a_patch_leaves_the_field_as_it_is(operator):
    event, _ = _seated_event(operator)
    changed = operator.patch(f"/v1/events/{event['id']}", {"name": None, "sales_start_at": None,
                                                           "sales_end_at": _at(150).isoformat()})
    assert changed.status_code == 200 and changed.json["name"] == event["name"]
    resource = _resource(operator, location={"lat": 52.5, "lng": 13.4})
    cleared = operator.patch(f"/v1/resources/{resource['id']}", {"name": None, "location": None})
    assert cleared.status_code == 200 and cleared.json["name"] == resource["name"] and cleared.json["lat"] is None
