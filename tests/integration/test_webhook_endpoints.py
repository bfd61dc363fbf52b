"""/v1/webhook-endpoints: a client's own endpoints, and no endpoint on a private address."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import falcon.testing
import pytest
import redis
from sqlalchemy import text

from adapters.webhooks import WebhookSender, check_url
from api.app import create_app
from db.engine import transaction
from db.unit_of_work import UnitOfWork
from domain.errors import UrlNotAllowed
from domain.lifecycle import BookingStatus
from tests.integration.notification_fixtures import Receiver
from tests.support import ApiClient, first_event, seat_request

PUBLIC = "93.184.215.14"


@pytest.fixture
def private_app(runtime: Any, settings: Any) -> Iterator[falcon.testing.TestClient]:
    """The app with WEBHOOK_ALLOW_PRIVATE_URLS=true, so endpoints can be on 127.0.0.1."""
    ctx = dataclasses.replace(runtime.context, settings=dataclasses.replace(settings, webhook_allow_private_urls=True))
    client = redis.Redis.from_url(settings.redis_url)
    yield falcon.testing.TestClient(create_app(ctx, redis_client=client))
    client.close()


@pytest.fixture
def private_api(private_app: Any, runtime: Any) -> ApiClient:
    return ApiClient.for_new_client(private_app, runtime.context.sessions, "hooks-client")


@pytest.fixture
def private_other_api(private_app: Any, runtime: Any) -> ApiClient:
    return ApiClient.for_new_client(private_app, runtime.context.sessions, "hooks-other-client")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hooks", "http://localhost/hooks", "http://10.1.2.3/", "http://192.168.0.10/",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
    "http://100.64.0.1/", "http://224.0.0.1/", "ftp://example.com/", "http://user:pw@example.com/",
])
def test_an_endpoint_on_a_private_or_odd_address_is_refused(api, url):
    answer = api.post("/v1/webhook-endpoints", {"url": url, "events": ["*"]})
    assert answer.status_code == 422
    assert answer.json["error"]["code"] in ("url_not_allowed", "validation_error")
    if url.startswith("http://") and "@" not in url:
        assert answer.json["error"]["code"] == "url_not_allowed"


def test_a_host_resolving_to_a_private_address_is_refused_at_registration():
    with pytest.raises(UrlNotAllowed):
        check_url("https://hooks.example.com/x", allow_private=False, https_only=True,
                  resolve=lambda host, port: [PUBLIC, "10.0.0.7"])
    check_url("https://hooks.example.com/x", allow_private=False, https_only=True, resolve=lambda host, port: [PUBLIC])


def test_a_host_that_resolves_to_loopback_at_delivery_time_is_never_contacted():
    receiver = Receiver()
    port = receiver.server.server_address[1]
    try:
        # Public when registered, loopback when delivered (DNS rebinding): the check after resolution stops it.
        sender = WebhookSender(allow_private=False, resolve=lambda host, p: ["127.0.0.1"])
        answer = sender.post(f"http://hooks.example.com:{port}/hooks", b"{}", {})
        assert answer.status_code is None and answer.error is not None
        assert answer.error.startswith("url_not_allowed")
        assert receiver.received == []
    finally:
        receiver.stop()


def test_a_client_manages_only_its_own_endpoints(private_api, private_other_api):
    created = private_api.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/x", "events": ["booking.confirmed"]})
    assert created.status_code == 201
    body = created.json
    assert body["secret"].startswith("whsec_") and body["events"] == ["booking.confirmed"]
    endpoint = body["id"]
    listed = private_api.get("/v1/webhook-endpoints").json["items"]
    assert [e["id"] for e in listed] == [endpoint] and "secret" not in listed[0]
    assert private_other_api.get("/v1/webhook-endpoints").json["items"] == []
    assert private_other_api.get(f"/v1/webhook-endpoints/{endpoint}/deliveries").status_code == 404
    assert private_other_api.app.simulate_delete(
        f"/v1/webhook-endpoints/{endpoint}", headers=private_other_api.auth()).status_code == 404
    assert private_api.app.simulate_delete(f"/v1/webhook-endpoints/{endpoint}", headers=private_api.auth()).status_code == 204
    assert private_api.get("/v1/webhook-endpoints").json["items"] == []


def test_a_client_has_at_most_twenty_endpoints(private_api):
    for n in range(20):
        assert private_api.post("/v1/webhook-endpoints", {"url": f"http://127.0.0.1:9/{n}", "events": ["*"]}).status_code == 201
    refused = private_api.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/21", "events": ["*"]})
    assert refused.status_code == 422 and refused.json["error"]["code"] == "endpoint_limit_reached"


def test_the_delivery_log_is_newest_first_and_a_delivery_can_be_retried(private_api, private_other_api, runtime):
    endpoint = private_api.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/x", "events": ["*"]}).json["id"]
    event_id, seats = first_event(runtime.context.sessions)
    booking_id = private_api.book(seat_request(event_id, seats[:1])).json["id"]
    with UnitOfWork(runtime.context.sessions) as uow:
        locked = uow.lock(uuid.UUID(booking_id))
        locked.move(BookingStatus.AWAITING_PAYMENT, datetime(2030, 1, 1, tzinfo=UTC))
        locked.move(BookingStatus.CANCELLED, datetime(2030, 1, 1, 0, 1, tzinfo=UTC))
        uow.commit()
    with transaction(runtime.context.sessions) as session:
        session.execute(text("UPDATE webhook_deliveries SET status = 'failed', attempts = 30, last_status_code = 500"))

    log = private_api.get(f"/v1/webhook-endpoints/{endpoint}/deliveries").json["items"]
    assert [(d["type"], d["status"], d["attempts"], d["last_status_code"], d["next_attempt_at"]) for d in log] == [
        ("booking.cancelled", "failed", 30, 500, None),
    ]
    path = f"/v1/webhook-endpoints/{endpoint}/deliveries/{log[0]['id']}/retry"
    assert private_other_api.post(path).status_code == 404
    assert private_api.post(path).status_code == 202
    [entry] = private_api.get(f"/v1/webhook-endpoints/{endpoint}/deliveries").json["items"]
    assert entry["status"] == "pending" and entry["next_attempt_at"] is not None
