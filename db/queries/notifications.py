"""Claiming due webhook deliveries and emails, and recording how each attempt went.

A sweep claims due rows by moving their `next_attempt_at` past a lease (SKIP LOCKED: two sweeps
never take the same row), works without a transaction open, then records each outcome only if
the row is still as it claimed it (a sweep that outlived its lease does not count twice).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class DueDelivery:
    id: uuid.UUID
    attempts: int
    url: str
    secret: str
    event_id: str
    type: str
    booking_id: uuid.UUID
    client_id: uuid.UUID
    data: dict[str, Any] | None
    event_created_at: datetime


_CLAIM_DELIVERIES = text("""
UPDATE webhook_deliveries d SET next_attempt_at = :lease_until
FROM (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= :now
      ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED) due,
     webhook_endpoints endpoint, notification_events event
WHERE d.id = due.id AND endpoint.id = d.endpoint_id AND event.id = d.event_id
RETURNING d.id, d.attempts, endpoint.url, endpoint.secret, event.id, event.type, event.booking_id,
          event.client_id, event.data, event.created_at
""")


def claim_due_deliveries(session: Session, now: datetime, lease_until: datetime, limit: int) -> list[DueDelivery]:
    rows = session.execute(_CLAIM_DELIVERIES, {"now": now, "lease_until": lease_until, "limit": limit})
    return [DueDelivery(*row) for row in rows]


def store_event_data(session: Session, event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Keep an event's rendered data (the first rendering wins: every retry sends the same)."""
    stored = session.execute(
        text("UPDATE notification_events SET data = COALESCE(data, CAST(:data AS jsonb)) WHERE id = :id RETURNING data"),
        {"id": event_id, "data": orjson.dumps(data).decode()},
    ).scalar_one()
    assert isinstance(stored, dict)
    return stored


def record_delivery_attempt(
    session: Session, delivery: DueDelivery, *, status: str, status_code: int | None, error: str | None,
    next_attempt_at: datetime, now: datetime,
) -> bool:
    """Whether it was recorded: not if the row is no longer as this attempt claimed it."""
    result = session.execute(text("""
        UPDATE webhook_deliveries
        SET attempts = attempts + 1, status = :status, last_status_code = :code, last_error = :error,
            next_attempt_at = :next_attempt_at,
            finished_at = :finished_at
        WHERE id = :id AND status = 'pending' AND attempts = :attempts
    """), {
        "id": delivery.id, "attempts": delivery.attempts, "status": status, "code": status_code,
        "error": error, "next_attempt_at": next_attempt_at, "finished_at": None if status == "pending" else now,
    })
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class DueEmail:
    booking_id: uuid.UUID
    kind: str
    recipient: str
    attempts: int
    created_at: datetime


_CLAIM_EMAILS = text("""
UPDATE booking_emails m SET next_attempt_at = :lease_until
FROM (SELECT booking_id, kind FROM booking_emails WHERE status = 'pending' AND next_attempt_at <= :now
      ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED) due
WHERE m.booking_id = due.booking_id AND m.kind = due.kind
RETURNING m.booking_id, m.kind, m.recipient, m.attempts, m.created_at
""")


def claim_due_emails(session: Session, now: datetime, lease_until: datetime, limit: int) -> list[DueEmail]:
    rows = session.execute(_CLAIM_EMAILS, {"now": now, "lease_until": lease_until, "limit": limit})
    return [DueEmail(*row) for row in rows]


def record_email_attempt(
    session: Session, email: DueEmail, *, status: str, error: str | None, next_attempt_at: datetime,
    now: datetime,
) -> None:
    session.execute(text("""
        UPDATE booking_emails
        SET attempts = attempts + 1, status = :status, last_error = :error, next_attempt_at = :next_attempt_at,
            finished_at = :finished_at
        WHERE booking_id = :booking_id AND kind = :kind AND status = 'pending' AND attempts = :attempts
    """), {
        "booking_id": email.booking_id, "kind": email.kind, "attempts": email.attempts, "status": status,
        "error": error, "next_attempt_at": next_attempt_at, "finished_at": None if status == "pending" else now,
    })


def release_email_claims(session: Session, emails: list[DueEmail], now: datetime) -> None:
    """Make claimed emails due again at once (a sweep giving back what it will not send)."""
    session.execute(text("""
        UPDATE booking_emails SET next_attempt_at = :now
        WHERE (booking_id, kind) IN (SELECT * FROM unnest(CAST(:booking_ids AS uuid[]), CAST(:kinds AS text[])))
          AND status = 'pending'
    """), {"now": now, "booking_ids": [e.booking_id for e in emails], "kinds": [e.kind for e in emails]})


@dataclass(frozen=True)
class NotificationFigures:
    deliveries: dict[str, int]
    emails: dict[str, int]
    oldest_due_seconds: float
    oldest_due_email_seconds: float = 0.0


def notification_figures(session: Session, now: datetime) -> NotificationFigures:
    deliveries = session.execute(text("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")).all()
    emails = session.execute(text("SELECT status, count(*) FROM booking_emails GROUP BY status")).all()
    oldest = session.scalar(text(
        "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= :now"
    ), {"now": now})
    oldest_email = session.scalar(text(
        "SELECT min(next_attempt_at) FROM booking_emails WHERE status = 'pending' AND next_attempt_at <= :now"
    ), {"now": now})
    return NotificationFigures(
        {status: count for status, count in deliveries}, {status: count for status, count in emails},
        (now - oldest).total_seconds() if oldest is not None else 0.0,
        (now - oldest_email).total_seconds() if oldest_email is not None else 0.0,
    )


@dataclass(frozen=True)
class FailingEndpoint:
    """An endpoint whose deliveries fail: given up on (`failed`) or still being retried (`retrying`)."""

    endpoint_id: uuid.UUID
    client_id: uuid.UUID
    client_name: str
    url: str
    failed: int
    retrying: int
    last_status_code: int | None
    last_error: str | None
    oldest_undelivered_at: datetime


#: Reads only the deliveries not yet succeeded (webhook_deliveries_undelivered); the last error is
#: that of the most recently attempted of them.
_FAILING_ENDPOINTS = text("""
SELECT e.id, e.client_id, c.name, e.url,
       count(*) FILTER (WHERE d.status = 'failed'),
       count(*) FILTER (WHERE d.status = 'pending' AND d.attempts > 0),
       (array_agg(d.last_status_code ORDER BY COALESCE(d.finished_at, d.next_attempt_at) DESC)
            FILTER (WHERE d.attempts > 0))[1],
       (array_agg(d.last_error ORDER BY COALESCE(d.finished_at, d.next_attempt_at) DESC)
            FILTER (WHERE d.attempts > 0))[1],
       min(d.created_at)
FROM webhook_deliveries d
JOIN webhook_endpoints e ON e.id = d.endpoint_id
JOIN clients c ON c.id = e.client_id
WHERE d.status <> 'succeeded'
GROUP BY e.id, c.id
HAVING count(*) FILTER (WHERE d.status = 'failed' OR d.attempts > 0) > 0
ORDER BY 5 DESC, 9
LIMIT :limit
""")


def failing_endpoints(session: Session, *, limit: int = 200) -> list[FailingEndpoint]:
    """Endpoints with deliveries failed or failing, those given up on most first."""
    return [FailingEndpoint(*row) for row in session.execute(_FAILING_ENDPOINTS, {"limit": limit})]
