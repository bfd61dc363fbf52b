"""Operators: the queue dashboard and its access rules, metrics, and request ids in the logs."""

from __future__ import annotations

import base64
import logging
import re
import uuid

from services import queues
from services.outbox import StagedMessage
from tests.support import BOTH_BROKERS, first_event, seat_request, wait_for, wait_for_statuses


def _operator_key(runtime) -> str:
    from db.engine import transaction
    from db.queries.clients import create_client

    with transaction(runtime.context.sessions) as session:
        return create_client(session, "ops", operator=True)[1]


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"ops:{key}".encode()).decode()}


def _force_dead_letter(runtime) -> str:
    """A message that fails at once, with no retries left: it lands in the dead-letter queue."""
    message_id = uuid.uuid4()
    runtime.context.dispatch([StagedMessage(message_id, *queues.PLACE_BOOKING, ("not-a-booking-id",), {"max_retries": 0})])
    return str(message_id)


def test_ops_pages_need_an_operator_key(app, api, runtime):
    assert app.simulate_get("/ops/queues").status_code == 401
    assert app.simulate_get("/ops/queues").headers["WWW-Authenticate"].startswith("Basic")
    assert app.simulate_get("/ops/queues", headers=api.auth()).status_code == 403
    key = _operator_key(runtime)
    assert app.simulate_get("/ops/queues", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert app.simulate_get("/ops/queues", headers=_basic(key)).status_code == 200
    assert app.simulate_get("/ops/queues", headers=_basic("bk_wrong")).status_code == 401


def _form(key: str) -> dict[str, str]:
    return {**_basic(key), "Content-Type": "application/x-www-form-urlencoded"}


@BOTH_BROKERS
def test_dead_letters_show_their_error_and_delete_one_only_with_the_form_token(app, runtime, worker):
    key = _operator_key(runtime)
    message_id = _force_dead_letter(runtime)

    def dead():
        data = app.simulate_get("/ops/api/dead", params={"queue": queues.BOOKINGS}, headers=_basic(key)).json
        return [d for d in data["letters"] if d["message_id"] == message_id]

    (letter,) = wait_for(dead, what="the message to be dead-lettered")
    assert letter["actor"] == "place_booking" and "ValueError" in letter["error"]
    assert "Traceback" in letter["traceback"]
    page = app.simulate_get("/ops/dead", headers=_basic(key)).text
    assert "not-a-booking-id" in page and "ValueError" in page
    token = re.search(r'name="token" value="(\w+)"', page)
    assert token is not None
    one = f"do=delete:bookings/{letter['redis_id']}"

    forged = app.simulate_post("/ops/dead", body=f"token=forged&{one}", headers=_form(key))
    assert forged.status_code == 403
    deleted = app.simulate_post("/ops/dead", body=f"token={token.group(1)}&{one}", headers=_form(key))
    assert deleted.status_code == 303 and deleted.headers["Location"].endswith("done=delete+1")
    assert dead() == []


def test_metrics_count_requests_by_route_and_bookings_by_status(app, api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[:1])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    api.get(f"/v1/bookings/{booking['id']}")

    text = app.simulate_get("/metrics", headers={"Authorization": f"Bearer {_operator_key(runtime)}"}).text
    assert re.search(r'http_requests_total\{method="POST",route="/v1/bookings",status="202"\} [1-9]', text)
    assert re.search(r'http_request_duration_seconds_count\{method="GET",route="/v1/bookings/\{booking_id:uuid\}"\} [1-9]', text)
    assert re.search(r'bookings\{status="authorized"\} 1\.0', text)


def test_one_request_id_is_on_the_api_line_and_the_worker_lines_it_caused(app, api, runtime, worker, caplog):
    from config.logging import ContextFilter

    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(ContextFilter())  # what configure_logging() puts on the real handler
    event_id, seats = first_event(runtime.context.sessions)
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    result = app.simulate_post("/v1/bookings", json=seat_request(event_id, seats[1:2]),
                               headers={**api.auth(), "Idempotency-Key": uuid.uuid4().hex, "X-Request-ID": request_id})
    assert result.headers["X-Request-ID"] == request_id
    booking_id = result.json["id"]
    wait_for_statuses(runtime.context.sessions, [booking_id], {"authorized"})
    wait_for(lambda: any(getattr(r, "outcome", None) == "done" and getattr(r, "booking_id", None) == booking_id
                         for r in caplog.records), what="the worker's closing log line")

    mine = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    api_lines = [r for r in mine if r.name == "api.access"]
    worker_lines = [r for r in mine if r.name != "api.access"]
    assert api_lines and api_lines[0].status == 202
    assert worker_lines and all(r.booking_id == booking_id for r in worker_lines)
    assert {r.actor for r in worker_lines} == {"place_booking"}
    assert not any("bk_" in r.getMessage() for r in caplog.records)  # no API key in any line
