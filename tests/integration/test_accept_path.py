"""The accept path prices seats from what the process remembers of the catalog, in one statement
that writes only if the catalog still says the same: a change is never sold at the old terms."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text

from db import queries
from db.engine import transaction
from tests.support import first_event, seat_request


def _change(runtime: Any, sql: str, **params: Any) -> None:
    with transaction(runtime.context.sessions) as session:
        session.execute(text(sql), params)


def _statements(runtime: Any, act: Any) -> tuple[Any, list[str]]:
    seen: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if "SAVEPOINT" not in statement:  # the test's own, around each statement of the accept path
            seen.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        return act(), seen
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)


def test_a_seat_booking_of_a_remembered_event_is_one_statement(api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    assert api.book(seat_request(event_id, seats[:1])).status_code == 202  # the event is read and remembered
    answer, statements = _statements(runtime, lambda: api.book(seat_request(event_id, seats[1:3])))
    assert answer.status_code == 202, answer.json
    assert len(statements) == 1 and "INSERT INTO bookings" in statements[0]
    assert [item["seat_id"] for item in answer.json["items"]] == [str(s) for s in seats[1:3]]
    assert answer.json["total_amount"] == sum(item["price"] for item in answer.json["items"]) > 0


#: Each a change to the catalog after the event was remembered, and what the next booking must show.
CHANGES = {
    "price": ("UPDATE event_prices SET amount = amount + 111 WHERE event_id = :event_id", "repriced"),
    "sale closed": ("UPDATE events SET sales_start_at = now() - interval '2 minutes',"
                    " sales_end_at = now() - interval '1 minute' WHERE id = :event_id",
                    "sales_closed"),
    "cancelled": ("UPDATE events SET status = 'cancelled' WHERE id = :event_id", "sales_closed"),
    "renamed": ("UPDATE events SET name = 'Renamed since' WHERE id = :event_id", "renamed"),
    "seat moved": ("UPDATE seats SET row = 'ZZ' WHERE id = :seat_id", "moved"),
}


def _book_after(api: Any, runtime: Any, change: str) -> tuple[dict[str, Any], Any]:
    event_id, seats = first_event(runtime.context.sessions)
    first = api.book(seat_request(event_id, seats[:1])).json
    _change(runtime, CHANGES[change][0], event_id=event_id, seat_id=seats[1])
    return first, api.book(seat_request(event_id, seats[1:2]))


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_catalog_changed_since_it_was_remembered_is_not_sold_on_the_old_terms(api, runtime, change):
    first, answer = _book_after(api, runtime, change)
    expected = CHANGES[change][1]
    if expected == "sales_closed":
        assert answer.status_code == 422 and answer.json["error"]["code"] == "sales_closed"
        return
    assert answer.status_code == 202, answer.json
    booked = answer.json
    if expected == "repriced":
        assert booked["total_amount"] == first["total_amount"] + 111
    if expected == "renamed":
        assert booked["event"]["name"] == "Renamed since"
    if expected == "moved":
        assert booked["items"][0]["row"] == "ZZ"
    # Bookings after it are again priced from memory (read again once), now from the changed catalog.
    event_id, seats = first_event(runtime.context.sessions)
    assert api.book(seat_request(event_id, seats[2:3])).status_code == 202
    again, statements = _statements(runtime, lambda: api.book(seat_request(event_id, seats[3:4])))
    assert again.status_code == 202 and len(statements) == 1


@pytest.mark.control
def test_control_without_the_check_a_changed_price_is_sold_at_the_old_one(api, runtime, monkeypatch):
    # Monkeypatching makes the insert skip its check of the catalog; nothing external is mocked.
    bookings = queries.bookings
    monkeypatch.setattr(bookings, "_INSERT_REQUEST_AS_PRICED", bookings._INSERT_REQUEST)
    first, answer = _book_after(api, runtime, "price")
    assert answer.status_code == 202 and answer.json["total_amount"] == first["total_amount"]


def test_a_seat_added_to_the_venue_is_sold_at_once_and_remembered_after_a_while(api, runtime, monkeypatch):
    from services.seat_sales import TTL_SECONDS

    now = [1000.0]
    monkeypatch.setattr(runtime.context.seat_sales, "_clock", lambda: now[0])
    event_id, seats = first_event(runtime.context.sessions)
    assert api.book(seat_request(event_id, seats[:1])).status_code == 202
    with transaction(runtime.context.sessions) as session:
        new_seat = session.execute(text(
            "INSERT INTO seats (id, venue_id, section, row, number, tier)"
            " SELECT gen_random_uuid(), venue_id, '', 'NEW', 1, 'standard' FROM events WHERE id = :event_id"
            " RETURNING id"), {"event_id": event_id}).scalar_one()
    # Not remembered yet: the catalog read prices it.
    answer, statements = _statements(runtime, lambda: api.book(seat_request(event_id, [new_seat])))
    assert answer.status_code == 202 and answer.json["items"][0]["row"] == "NEW" and len(statements) == 2
    now[0] += TTL_SECONDS
    assert api.book(seat_request(event_id, seats[1:2])).status_code == 202  # this one reads the venue again
    answer, statements = _statements(runtime, lambda: api.book(seat_request(event_id, [new_seat])))
    assert answer.status_code == 202 and len(statements) == 1


def test_an_unknown_event_is_refused_with_its_code_and_looked_up_once_for_memory(api, runtime):
    import uuid

    event_id, seats = first_event(runtime.context.sessions)
    unknown = uuid.uuid4()
    first = api.book(seat_request(unknown, seats[:1]))
    assert first.status_code == 422 and first.json["error"]["details"][0]["field"] == "event_id"
    again, statements = _statements(runtime, lambda: api.book(seat_request(unknown, seats[:1])))
    assert again.json == first.json
    assert not [s for s in statements if "jsonb_object_agg" in s]  # not looked for in memory's way again



@pytest.mark.commits  # the failed insert must be its own statement, as in production
@pytest.mark.parametrize("path", ["catalog read", "remembered catalog"])
def test_a_seat_removed_between_the_read_and_the_write_is_refused_not_a_500(api, runtime, monkeypatch, path):
    import services.requests as requests

    event_id, seats = first_event(runtime.context.sessions)
    owner, name = (requests, "_priced_items") if path == "catalog read" else (runtime.context.seat_sales, "priced")
    read = getattr(owner, name)

    def read_then_an_import_removes_the_seat(*args):  # type: ignore[no-untyped-def]
        answer = read(*args)
        _change(runtime, "DELETE FROM seats WHERE id = :seat_id", seat_id=seats[0])
        return answer

    # Monkeypatching puts a catalog import's delete between the read and the write; nothing is mocked.
    monkeypatch.setattr(owner, name, read_then_an_import_removes_the_seat)
    if path == "catalog read":
        monkeypatch.setattr(requests, "_record_as_remembered", lambda *args: None)
    answer = api.book(seat_request(event_id, seats[:1]))
    assert answer.status_code == 422, answer.json
    assert answer.json["error"]["details"][0]["field"].startswith("seat")
    with transaction(runtime.context.sessions) as session:
        assert session.execute(text("SELECT count(*) FROM bookings")).scalar_one() == 0
