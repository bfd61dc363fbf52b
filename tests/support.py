"""Helpers shared by integration and end-to-end tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import falcon.testing
import httpx
import pytest
import stripe
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from db.engine import transaction
from db.models import Booking, Event, Resource, Seat
from db.queries.clients import create_client
from testkit.stripe_webhooks import sign

#: Runs a test on each broker: Redis, and RabbitMQ where one is reachable (skipped elsewhere).
BOTH_BROKERS = pytest.mark.parametrize("broker_kind", ["redis", "rabbitmq"], indirect=True)
#: On Redis even when BROKER_URL says RabbitMQ: what only the Redis broker shows (queue latency,
#: the list of delayed messages; see docs/operations.md, "Brokers").
REDIS_BROKER_ONLY = pytest.mark.parametrize("broker_kind", ["redis"], indirect=True)


def new_key() -> str:
    return uuid.uuid4().hex


@dataclass
class ApiClient:
    """An API client with its own key, calling the app in process through falcon's TestClient."""

    app: falcon.testing.TestClient
    key: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_new_client(cls, app: falcon.testing.TestClient, sessions: sessionmaker[Session], name: str) -> ApiClient:
        with transaction(sessions) as session:
            _, key = create_client(session, name)
        return cls(app, key)

    def auth(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **extra}

    def get(self, path: str, **params: Any) -> falcon.testing.Result:
        return self.app.simulate_get(path, headers=self.auth(), params=params or None)

    def post(self, path: str, body: Any = None, *, key: str | None = None) -> falcon.testing.Result:
        headers = self.auth(**({"Idempotency-Key": key} if key else {}))
        return self.app.simulate_post(path, json=body, headers=headers)

    def book(self, body: dict[str, Any], *, key: str | None = None) -> falcon.testing.Result:
        return self.post("/v1/bookings", body, key=key or new_key())


def seat_request(event_id: Any, seat_ids: Iterable[Any], *, payment_method: str = "pm_card_visa",
                 capture: str = "on_confirm") -> dict[str, Any]:
    return {
        "event_id": str(event_id), "seat_ids": [str(s) for s in seat_ids],
        "customer": {"email": "ada@example.com", "name": "Ada"},
        "payment": {"mode": "card", "payment_method": payment_method, "capture": capture},
    }


def slot_request(resource_id: Any, starts_at: str, ends_at: str, *, payment_method: str = "pm_card_visa") -> dict[str, Any]:
    return {
        "resource_id": str(resource_id), "starts_at": starts_at, "ends_at": ends_at,
        "customer": {"email": "bob@example.com"},
        "payment": {"mode": "card", "payment_method": payment_method},
    }


def first_event(sessions: sessionmaker[Session]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """The first demo event (a seated one, on sale) and its venue's seat ids, in row/number order."""
    with sessions() as session:
        event = session.scalars(select(Event).where(Event.ref == "magic-flute")).first()
        assert event is not None
        seats = session.scalars(
            select(Seat.id).where(Seat.venue_id == event.venue_id).order_by(Seat.row, Seat.number)
        ).all()
        return event.id, list(seats)


def a_resource(sessions: sessionmaker[Session], category: str = "meeting_room") -> uuid.UUID:
    with sessions() as session:
        resource_id = session.scalars(select(Resource.id).where(Resource.category == category).order_by(Resource.name)).first()
        assert resource_id is not None
        return resource_id


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def statuses(sessions: sessionmaker[Session], booking_ids: Iterable[Any]) -> dict[str, str]:
    ids = [uuid.UUID(str(b)) for b in booking_ids]
    with sessions() as session:
        return {str(i): s for i, s in session.execute(select(Booking.id, Booking.status).where(Booking.id.in_(ids)))}


def wait_for_statuses(
    sessions: sessionmaker[Session], booking_ids: Iterable[Any], accepted: set[str], *, timeout: float = 60
) -> dict[str, str]:
    ids = list(booking_ids)

    def settled() -> dict[str, str] | None:
        current = statuses(sessions, ids)
        return current if len(current) == len(ids) and all(s in accepted for s in current.values()) else None

    return wait_for(settled, timeout=timeout, what=f"{len(ids)} bookings to reach {sorted(accepted)}")


def stripe_client(stripe_url: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_local", base_addresses={"api": stripe_url})


def play_at_local_stripe(stripe_url: str, path: str, **form: str) -> dict[str, Any]:
    """A route of the local Stripe server that plays the customer or their bank (our additions and
    localstripe's own `_authenticate`), which the SDK has no call for."""
    answer = httpx.post(f"{stripe_url}{path}", data=form, headers={"Authorization": "Bearer sk_test_local"})
    answer.raise_for_status()
    return dict(answer.json())


def intents_for(client: stripe.StripeClient, booking_id: Any) -> list[Any]:
    """PaymentIntents the local Stripe server holds for a booking (by metadata.booking_id)."""
    intents = (pi.to_dict() for pi in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter())
    return [pi for pi in intents if (pi.get("metadata") or {}).get("booking_id") == str(booking_id)]


def double_claims(sessions: sessionmaker[Session]) -> list[Any]:
    """Seats or slots claimed by more than one booking at once (must always be empty)."""
    with sessions() as session:
        seats = session.execute(text(
            "SELECT event_id, seat_id FROM booking_items WHERE holds_inventory AND seat_id IS NOT NULL "
            "GROUP BY 1, 2 HAVING count(*) > 1"
        )).all()
        slots = session.execute(text(
            "SELECT a.id, b.id FROM booking_items a JOIN booking_items b ON a.resource_id = b.resource_id "
            "AND a.id < b.id AND a.period && b.period WHERE a.holds_inventory AND b.holds_inventory"
        )).all()
        return [*seats, *slots]


def post_webhook(app: falcon.testing.TestClient, event: dict[str, Any], secret: str, **sign_options: Any) -> falcon.testing.Result:
    import json

    body = json.dumps(event).encode()
    return app.simulate_post(
        "/v1/webhooks/stripe", body=body,
        headers={"Stripe-Signature": sign(body, secret, **sign_options), "Content-Type": "application/json"},
    )


def ledger(sessions: sessionmaker[Session], event_id: str) -> dict[str, Any] | None:
    with sessions() as session:
        row = session.execute(
            text("SELECT outcome, note, processed_at FROM webhook_events WHERE id = :id"), {"id": event_id}
        ).mappings().first()
        return dict(row) if row else None


def wait_for_ledger(sessions: sessionmaker[Session], event_id: str, timeout: float = 20) -> dict[str, Any]:
    return wait_for(
        lambda: (row := ledger(sessions, event_id)) and row["processed_at"] and row,
        timeout=timeout, what=f"event {event_id} to be processed",
    )
