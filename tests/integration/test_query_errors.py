"""One mistake, one answer: a bad cursor or query parameter is the same 400 on every route."""

from __future__ import annotations

import base64

import pytest

from tests.support import first_event


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize("cursor", [
    "!!!not-base64",
    _b64("no separator"),
    _b64("2030-01-01T00:00:00+00:00|not-a-uuid"),
    _b64("yesterday|00000000-0000-4000-8000-000000000000"),
    base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
    "A" * 300,
], ids=["not-base64", "no-separator", "bad-uuid", "bad-time", "not-utf8", "too-long"])
def test_a_malformed_cursor_is_400_invalid_cursor_whatever_is_wrong_with_it(api, cursor):
    answer = api.get("/v1/bookings", cursor=cursor)
    assert answer.status_code == 400
    assert answer.json["error"]["code"] == "invalid_cursor"


def test_a_cursor_the_api_gave_still_works(api, runtime):
    from tests.support import seat_request

    event_id, seats = first_event(runtime.context.sessions)
    for seat in seats[:2]:
        api.book(seat_request(event_id, [seat]))
    cursor = api.get("/v1/bookings", limit=1).json["next_cursor"]
    assert len(api.get("/v1/bookings", limit=1, cursor=cursor).json["items"]) == 1


@pytest.mark.parametrize("path", [
    "/v1/bookings", "/v1/events", "/v1/resources",
    "/v1/events/{event_id}", "/v1/events/{event_id}/seats", "/v1/bookings/00000000-0000-4000-8000-000000000000",
])
@pytest.mark.parametrize("params", [{"bogus": "1"}, {"limit": "abc"}, {"limit": ["1", "2"]}])
def test_every_get_route_refuses_unknown_and_invalid_parameters_alike(api, runtime, path, params):
    event_id, _ = first_event(runtime.context.sessions)
    answer = api.get(path.format(event_id=event_id), **params)
    assert answer.status_code == 400, answer.text
    assert answer.json["error"]["code"] == "invalid_query"
