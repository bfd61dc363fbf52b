"""Fuzzing the HTTP API from its own OpenAPI document with Schemathesis.

Every operation in /openapi.json gets the requests Schemathesis derives from the document: its
examples, the coverage phase's boundary values and missing parameters, then Hypothesis-generated
valid and invalid requests. Whatever is sent, the answer must not be a 5xx, its status code,
content type and body must be the ones documented, and an invalid request must be refused with a
4xx (CHECKS below).

The app runs in process (WSGI) against the suite's real PostgreSQL, Redis and local Stripe. A few
bookings are made first (a Dramatiq worker takes them to several states, then stops, so that the
fuzzing itself is not racing background work), and some valid requests are aimed at them and at
the demo catalog (`_aimed`), so that they get past the 404 or "no such event" that a random UUID
gets, into confirm, cancel, payment retry and booking requests.

The Stripe webhook is authenticated by its signature rather than by anything the document can
describe: it is fuzzed on its own, for "never a 5xx, and a body that is not signed is a 400".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import falcon.testing
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.specs.openapi.formats import INVALID_HEADER_CHARS
from sqlalchemy import select

from api.openapi import build_spec
from db.engine import transaction
from db.queries.clients import create_client
from tests.integration.conftest import runtime  # noqa: F401  (the fixture, used below)
from tests.support import ApiClient, first_event, new_key, seat_request, wait_for_statuses

WEBHOOK = "/v1/webhooks/stripe"

# `positive_data_acceptance` (a valid request must be a 2xx) is left out on purpose: the document
# cannot say which ids exist or what state a booking is in, so 404, 409 and 422 ("no such event",
# seat taken, `invalid_state`) are right answers to well-formed requests. Those are still held to
# the documented status codes and error schema.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    ignored_auth,
]

# Bounded for CI: with the coverage phase's cases on top, the whole file runs in well under 2 min.
# The suite draws the same examples every run (a red CI then means a change broke something, not
# that the dice found something new); FUZZ_MAX_EXAMPLES=500 FUZZ_RANDOM=1 explores by hand.
FUZZ = hypothesis_settings(
    max_examples=int(os.environ.get("FUZZ_MAX_EXAMPLES", "50")),
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    deadline=None, database=None, suppress_health_check=list(HealthCheck),
)

# The document the app serves (the fixture checks it is this one), loaded at collection time so
# that pytest gets one test per operation. (`schemathesis.pytest.from_fixture`, which would load it
# from the running app, fails under pytest 9.2: it sets `request.node._nodeid`, which is gone.)
schema = schemathesis.openapi.from_dict(build_spec())

# A worker thread places the bookings the fuzzer aims at: their writes must be committed.
pytestmark = pytest.mark.commits
schema.config.generation.update(
    # Every request carries the real client key (`_send`); `ignored_auth` still tries each one
    # without it and with a wrong one. Generated keys could only ever be refused.
    with_security_parameters=False,
    # Gunicorn answers 400 itself to control characters in a header (NUL included): generated
    # headers hold what can reach the app.
    exclude_header_characters=INVALID_HEADER_CHARS,
)


@dataclass
class Known:
    """What exists in the database during a test: what `_aimed` aims requests at."""

    booking_ids: list[str]
    event_id: str
    #: An event at the demo venue that writes (PATCH, block) may change.
    scratch_event_id: str
    seat_ids: list[str]
    resource_ids: list[str]


#: Set by the `target` fixture for the duration of a test; the hook below reads it.
KNOWN: Known | None = None


@st.composite
def _aimed(draw: st.DrawFn, case: Any, known: Known) -> Any:
    if "booking_id" in case.path_parameters and draw(st.booleans()):
        booking_id = draw(st.sampled_from(known.booking_ids))
        case.path_parameters = {**case.path_parameters, "booking_id": booking_id}
    if "event_id" in case.path_parameters and draw(st.booleans()):
        # Writes go to an event of their own: the demo event's window and prices must hold.
        aimed = known.scratch_event_id if case.method in ("POST", "PATCH") else known.event_id
        case.path_parameters = {**case.path_parameters, "event_id": aimed}
    if "resource_id" in case.path_parameters and case.method == "GET" and draw(st.booleans()):
        case.path_parameters = {**case.path_parameters, "resource_id": draw(st.sampled_from(known.resource_ids))}
    if "Idempotency-Key" in case.headers and draw(st.integers(0, 3)):
        # Generated keys repeat a lot ("0", "00"...), and a repeated key is answered from the
        # first request (a replay or `idempotency_key_reused`) without reaching the command.
        case.headers = {**case.headers, "Idempotency-Key": draw(st.uuids()).hex}
    if case.path == "/v1/bookings" and isinstance(case.body, dict):
        body = dict(case.body)
        if body.get("event_id") is not None and draw(st.booleans()):
            body["event_id"] = known.event_id
            seats = st.lists(st.sampled_from(known.seat_ids), min_size=1, max_size=3, unique=True)
            body["seat_ids"] = draw(seats)
        elif body.get("resource_id") is not None:
            if draw(st.booleans()):
                body["resource_id"] = draw(st.sampled_from(known.resource_ids))
            body = _short_slot(draw, body)
        case.body = body
    if case.path == "/v1/resources" and case.method == "GET":
        case.query = _consistent_search(draw, dict(case.query))
    if case.path == "/v1/events" and case.method == "POST" and isinstance(case.body, dict):
        case.body = _far_future(case.body)
    return case


# Rules across fields that the document cannot express; a generated request seldom keeps them,
# and one that breaks them is a 4xx before it reaches anything else. These repair some.


def _instant(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _short_slot(draw: st.DrawFn, body: dict[str, Any]) -> dict[str, Any]:
    """A slot starting as generated (any year, any UTC offset), at most the 7 days allowed long."""
    starts_at = _instant(body.get("starts_at"))
    length = draw(st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=7)))
    try:
        return {**body, "ends_at": (starts_at + length).isoformat()} if starts_at else body
    except OverflowError:
        return body


def _far_future(body: dict[str, Any]) -> dict[str, Any]:
    """An event made by the fuzzer starts after every demo event (tests take the first of those)."""
    starts_at, ends_at = _instant(body.get("starts_at")), _instant(body.get("ends_at"))
    if starts_at is None or ends_at is None:
        return body
    try:
        shift = starts_at.replace(year=2200) - starts_at
        return {**body, "starts_at": (starts_at + shift).isoformat(), "ends_at": (ends_at + shift).isoformat()}
    except (ValueError, OverflowError):
        return body


def _consistent_search(draw: st.DrawFn, query: dict[str, Any]) -> dict[str, Any]:
    """`radius_km` with a valid `near`; `available_from` and `available_to` in order, or neither."""
    if query.get("radius_km") is not None:
        lat = draw(st.floats(min_value=-90, max_value=90))
        lng = draw(st.floats(min_value=-180, max_value=180))
        query["near"] = f"{lat:.5f},{lng:.5f}"
    given = (_instant(query.get("available_from")), _instant(query.get("available_to")))
    window = sorted(instant for instant in given if instant)
    query.pop("available_from", None)
    query.pop("available_to", None)
    if len(window) == 2 and window[0] < window[1]:
        query["available_from"], query["available_to"] = (instant.isoformat() for instant in window)
    return query


@schema.hook
def flatmap_case(context: Any, case: Any) -> st.SearchStrategy[Any]:
    """Aim some valid requests at what exists (only valid ones: an invalid one stays as made)."""
    known = KNOWN
    if known is None or case.meta is None or not case.meta.generation.mode.is_positive:
        return st.just(case)
    return _aimed(case, known)


@dataclass
class Target:
    app: falcon.App
    key: str
    #: For the catalog's write routes (a client key there is only ever a 403).
    operator_key: str


def _operator_only(case: Any) -> bool:
    return case.method in ("POST", "PATCH") and case.path.startswith(("/v1/venues", "/v1/events", "/v1/resources"))


@pytest.fixture
def target(runtime: Any, settings: Any) -> Iterator[Target]:  # noqa: F811
    """The app in process, a client key, and bookings of that client in several states."""
    global KNOWN
    from api.app import create_app
    from db.models import Event, Resource

    redis_client = redis.Redis.from_url(settings.redis_url)
    app = create_app(runtime.context, redis_client=redis_client)
    client = falcon.testing.TestClient(app)
    served = client.simulate_get("/openapi.json")
    assert served.status_code == 200 and served.json == schema.raw_schema, "a stale document"

    sessions = runtime.context.sessions
    api = ApiClient.for_new_client(client, sessions, "fuzzer")
    other = ApiClient.for_new_client(client, sessions, "someone-else")
    with transaction(sessions) as session:
        _, operator_key = create_client(session, "fuzzing-operator", operator=True)
    event_id, seats = first_event(sessions)
    without_method = seat_request(event_id, seats[2:3])
    del without_method["payment"]["payment_method"]
    made = {
        "authorized": api.book(seat_request(event_id, seats[0:1])).json["id"],
        "cancelled": api.book(seat_request(event_id, seats[1:2])).json["id"],
        "awaiting_payment": api.book(without_method).json["id"],
    }
    theirs = other.book(seat_request(event_id, seats[3:4])).json["id"]
    worker = dramatiq.Worker(runtime.broker, worker_threads=4, worker_timeout=100)
    worker.start()
    try:
        wait_for_statuses(sessions, [made["authorized"], made["cancelled"]], {"authorized"})
        cancel = api.post(f"/v1/bookings/{made['cancelled']}/cancel", key=new_key())
        assert cancel.status_code == 202
        wait_for_statuses(sessions, [made["cancelled"]], {"cancelled"})
        wait_for_statuses(sessions, [made["awaiting_payment"]], {"awaiting_payment"})
    finally:
        worker.stop()
    with sessions() as session:
        resource_ids = [str(r) for r in session.scalars(select(Resource.id))]
        venue_id = session.scalars(select(Event.venue_id).where(Event.id == event_id)).one()

    scratch = client.simulate_post("/v1/events", headers={"Authorization": f"Bearer {operator_key}",
                                                          "Idempotency-Key": new_key()}, json={
        "name": "Fuzzed", "venue_id": str(venue_id), "starts_at": "2200-01-01T19:00:00Z",
        "ends_at": "2200-01-01T22:00:00Z", "currency": "EUR", "prices": {"standard": 1000},
    })
    assert scratch.status_code == 201, scratch.json
    KNOWN = Known(
        booking_ids=[*made.values(), theirs],
        event_id=str(event_id),
        scratch_event_id=scratch.json["id"],
        seat_ids=[str(s) for s in seats[4:40]],
        resource_ids=resource_ids,
    )
    try:
        yield Target(app, api.key, operator_key)
    finally:
        KNOWN = None
        redis_client.close()


def _send(case: Any, target: Target, checks: list[Any], *, auth: bool = True) -> None:
    # The app exists only once the fixture ran. Both are set: `ignored_auth` sends its probes
    # through the schema's transport, which would otherwise be HTTP to nowhere.
    case.operation.app = case.operation.schema.app = target.app
    key = target.operator_key if _operator_only(case) else target.key
    headers = {"Authorization": f"Bearer {key}"} if auth else {}
    case.call_and_validate(headers=headers, checks=checks)


@schema.exclude(path=WEBHOOK).parametrize()
@FUZZ
def test_api_answers_as_documented(case: Any, target: Target) -> None:
    _send(case, target, CHECKS)


def unsigned_webhook_is_refused(ctx: Any, response: Any, case: Any) -> None:
    """Nothing here is signed with the webhook secret: the answer is a 400 in the error shape.

    (The coverage phase also tries methods the route does not have: those are a 405, but for
    OPTIONS, which Falcon answers for every route.)
    """
    if response.request.method == "OPTIONS":
        return
    expected = 400 if response.request.method == "POST" else 405
    assert response.status_code == expected, f"expected {expected}, got {response.status_code}"
    if expected == 400:
        assert response.json()["error"]["code"] == "invalid_signature", response.json()


@schema.include(path=WEBHOOK).parametrize()
@FUZZ
def test_unsigned_webhook_is_a_400_never_a_5xx(case: Any, target: Target) -> None:
    _send(case, target, [not_a_server_error, unsigned_webhook_is_refused], auth=False)
