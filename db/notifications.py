"""Recording what clients and customers will be told, in the transaction of what happened.

`record_transitions` is what a unit of work calls at commit, after writing its bookings back:
every transition a client's endpoint subscribes to becomes one event (its `evt_` id made here,
once) and one delivery per subscribed endpoint; every transition a customer is emailed about
becomes one email row per (booking, kind). One statement does all of it, and none runs when no
transition is one anybody hears of (most steps of a booking: `awaiting_payment`, payment steps).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from db.driver import DriverStatement
from db.models import Booking, BookingTransition
from domain.lifecycle import BookingStatus
from domain.notifications import ALL_EVENTS, EMAILED_STATUSES, EVENT_OF_STATUS, EventType

_RECORD = DriverStatement(text(f"""
WITH happened AS (
    SELECT * FROM unnest(CAST(:event_ids AS text[]), CAST(:types AS text[]), CAST(:booking_ids AS uuid[]),
                         CAST(:client_ids AS uuid[]), CAST(:ats AS timestamptz[]))
        AS happened(event_id, type, booking_id, client_id, at)
), subscribed AS (
    SELECT happened.event_id, endpoint.id AS endpoint_id, happened.at
    FROM happened JOIN webhook_endpoints endpoint ON endpoint.client_id = happened.client_id
     AND (happened.type = ANY(endpoint.events) OR '{ALL_EVENTS}' = ANY(endpoint.events))
), events AS (
    INSERT INTO notification_events (id, type, booking_id, client_id, created_at)
    SELECT event_id, type, booking_id, client_id, at FROM happened
    WHERE event_id IN (SELECT event_id FROM subscribed)
), deliveries AS (
    INSERT INTO webhook_deliveries (id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
    SELECT gen_random_uuid(), endpoint_id, event_id, 'pending', 0, at, at FROM subscribed
)
INSERT INTO booking_emails (booking_id, kind, recipient, status, attempts, next_attempt_at, created_at)
SELECT booking_id, kind, recipient, 'pending', 0, at, at
FROM unnest(CAST(:mail_booking_ids AS uuid[]), CAST(:mail_kinds AS text[]), CAST(:mail_recipients AS text[]),
            CAST(:mail_ats AS timestamptz[])) AS mail(booking_id, kind, recipient, at)
ON CONFLICT (booking_id, kind) DO NOTHING
"""))


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Happening:
    """An event of a booking's client may hear of (`event`), and the email its customer is owed."""

    booking_id: uuid.UUID
    client_id: uuid.UUID
    at: datetime
    event: EventType | None
    email_kind: str | None = None
    recipient: str | None = None


def happenings(booking: Booking, history: Sequence[BookingTransition],
               facts: Sequence[tuple[EventType, datetime]] = ()) -> list[Happening]:
    """What a booking's new transitions (and facts that are not transitions) tell anybody."""
    told = [
        happening for transition in history
        if (happening := of_transition(booking.id, booking.client_id, booking.customer_email,
                                       BookingStatus(transition.to_status), transition.at)) is not None
    ]
    told += [Happening(booking.id, booking.client_id, at, event) for event, at in facts]
    return told


def of_transition(
    booking_id: uuid.UUID, client_id: uuid.UUID, customer_email: str | None, status: BookingStatus, at: datetime
) -> Happening | None:
    """What a booking's move to `status` tells its client and customer (None: nobody hears of it)."""
    emailed = status in EMAILED_STATUSES and bool(customer_email)
    if status not in EVENT_OF_STATUS and not emailed:
        return None
    return Happening(booking_id, client_id, at, EVENT_OF_STATUS.get(status),
                     status.value if emailed else None, customer_email if emailed else None)


def record(connection: Connection, told: Sequence[Happening]) -> None:
    """Record events, deliveries and emails in the caller's transaction (nothing to tell: no statement)."""
    if not told:
        return
    events = [h for h in told if h.event is not None]
    mails = [h for h in told if h.email_kind is not None]
    _RECORD.execute(connection, {
        "event_ids": [new_event_id() for _ in events], "types": [h.event for h in events],
        "booking_ids": [h.booking_id for h in events], "client_ids": [h.client_id for h in events],
        "ats": [h.at for h in events],
        "mail_booking_ids": [h.booking_id for h in mails], "mail_kinds": [h.email_kind for h in mails],
        "mail_recipients": [h.recipient for h in mails], "mail_ats": [h.at for h in mails],
    })
