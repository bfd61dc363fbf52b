"""The schema, as SQLAlchemy 2 typed mappings. Migrations in db/migrations mirror it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSTZRANGE, UUID, ExcludeConstraint, Range
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        uuid.UUID: UUID(as_uuid=True),
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
    }

    if TYPE_CHECKING:
        # Every model here maps one Table (none maps a join or a select), so its __table__ takes
        # Core's insert(), update() and delete(); DeclarativeBase can only promise a FromClause.
        __table__: ClassVar[Table]


def _now() -> Any:
    return mapped_column(server_default=func.now())


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="client")
    key_prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None]


class Venue(Base):
    __tablename__ = "venues"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    #: The operator's own stable id, so an import can be repeated.
    ref: Mapped[str | None] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")


class Seat(Base):
    __tablename__ = "seats"
    __table_args__ = (UniqueConstraint("venue_id", "section", "row", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    venue_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("venues.id"), index=True)
    #: '' when the venue has no sections (part of the unique key, so never NULL).
    section: Mapped[str] = mapped_column(String(40), server_default="")
    row: Mapped[str] = mapped_column(String(10))
    number: Mapped[int]
    tier: Mapped[str] = mapped_column(String(40))
    #: Set when a re-imported layout no longer has the seat but bookings point at it: kept for
    #: their history, never sold again, shown only where a live booking still holds it.
    retired_at: Mapped[datetime | None]


class Event(Base):
    """Seated (at a venue) or general admission (a capacity), with its sale window."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="event_period_valid"),
        CheckConstraint("(venue_id IS NULL) <> (capacity IS NULL)", name="event_seated_or_general"),
        CheckConstraint("capacity > 0", name="event_capacity_positive"),
        CheckConstraint("sales_end_at > sales_start_at", name="event_sale_window_valid"),
        CheckConstraint("status IN ('active', 'cancelled')", name="event_status_known"),
        # The backstop of general admission: the places claimed never exceed the capacity, however
        # the placement code errs (seated events claim no places, so theirs stays 0).
        CheckConstraint("places_claimed BETWEEN 0 AND coalesce(capacity, 0)", name="event_places_within_capacity"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    ref: Mapped[str | None] = mapped_column(String(200), unique=True)
    venue_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("venues.id"), index=True)
    capacity: Mapped[int | None]
    name: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    sales_start_at: Mapped[datetime]
    sales_end_at: Mapped[datetime]
    #: active or cancelled; on sale, scheduled and sales closed follow from the clock.
    status: Mapped[str] = mapped_column(String(20), server_default="active")
    currency: Mapped[str] = mapped_column(String(3))
    #: The places that live general-admission claims hold (quantities of booking items that hold
    #: inventory), kept by triggers on booking_items in the same statement as the claim, so it
    #: cannot drift from them: see the migration 0008_catalog_backstops.
    places_claimed: Mapped[int] = mapped_column(Integer, server_default="0")


class EventPrice(Base):
    __tablename__ = "event_prices"
    __table_args__ = (CheckConstraint("amount >= 0", name="event_price_non_negative"),)

    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), primary_key=True)
    tier: Mapped[str] = mapped_column(String(40), primary_key=True)
    amount: Mapped[int]


class BlockedSeat(Base):
    """A seat not for sale at one event (a broken seat, a camera position)."""

    __tablename__ = "event_blocked_seats"

    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), primary_key=True)
    seat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("seats.id"), primary_key=True)
    blocked_at: Mapped[datetime] = _now()


class Resource(Base):
    """A bookable resource and its schedule: weekly hours in its own time zone, dated exceptions
    (`[{"date": "YYYY-MM-DD", "hours": [["09:00", "12:00"]]}]`, no hours: closed), and its rules."""

    __tablename__ = "resources"
    __table_args__ = (
        CheckConstraint("rate_per_minute >= 0", name="resource_rate_non_negative"),
        CheckConstraint(
            "buffer_minutes >= 0 AND min_notice_minutes >= 0 AND max_advance_days > 0 AND granularity_minutes > 0",
            name="resource_rules_valid",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    ref: Mapped[str | None] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(60), index=True)
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    rate_per_minute: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    weekly_hours: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    exceptions: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    buffer_minutes: Mapped[int] = mapped_column(Integer, server_default="0")
    min_notice_minutes: Mapped[int] = mapped_column(Integer, server_default="0")
    max_advance_days: Mapped[int] = mapped_column(Integer, server_default="365")
    granularity_minutes: Mapped[int] = mapped_column(Integer, server_default="1")


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint(
            "(event_id IS NULL) <> (resource_id IS NULL)", name="booking_targets_one_inventory"
        ),
        CheckConstraint("total_amount >= 0", name="booking_total_non_negative"),
        Index("bookings_by_client", "client_id", text("created_at DESC"), text("id DESC")),
        Index(
            "bookings_expiring",
            "expires_at",
            postgresql_where=text("status IN ('awaiting_payment', 'authorized')"),
        ),
        Index("bookings_by_status", "status", "updated_at"),
        Index(
            "bookings_terminal_by_age",
            "updated_at",
            postgresql_where=text("status IN ('rejected', 'expired', 'cancelled', 'refunded')"),
        ),
        # Operators' search: by customer, by what was booked, and everything newest first.
        Index("bookings_by_email", text("lower(customer_email)"), text("created_at DESC")),
        Index("bookings_by_event", "event_id", text("created_at DESC"), postgresql_where=text("event_id IS NOT NULL")),
        Index(
            "bookings_by_resource", "resource_id", text("created_at DESC"),
            postgresql_where=text("resource_id IS NOT NULL"),
        ),
        Index("bookings_newest_first", text("created_at DESC"), text("id DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"))
    status: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("events.id"))
    resource_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("resources.id"))
    total_amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    payment_mode: Mapped[str] = mapped_column(String(20))
    capture_mode: Mapped[str] = mapped_column(String(20))
    payment_method: Mapped[str | None] = mapped_column(String(255))
    customer_email: Mapped[str] = mapped_column(String(320))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(60))
    confirm_requested_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    #: The refund a cancel asked for (policy, full, none) and why it ends the booking.
    cancel_refund: Mapped[str | None] = mapped_column(String(10))
    cancel_reason: Mapped[str | None] = mapped_column(String(60))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class BookingItem(Base):
    """A seat of an event, places at a general-admission event (`quantity`, no seat), or a period
    of a resource; `holds_inventory` is the claim. `price` is the item's total."""

    __tablename__ = "booking_items"
    __table_args__ = (
        CheckConstraint(
            "(event_id IS NOT NULL AND resource_id IS NULL AND period IS NULL)"
            " OR (seat_id IS NULL AND event_id IS NULL AND resource_id IS NOT NULL"
            " AND period IS NOT NULL)",
            name="booking_item_is_seat_or_slot",
        ),
        CheckConstraint("quantity > 0 AND (seat_id IS NULL OR quantity = 1)", name="booking_item_quantity_valid"),
        # Backstops for the claim rules: however the code errs, the database itself refuses a second
        # active claim on a seat or an overlapping one on a slot.
        Index(
            "booking_items_one_claim_per_seat",
            "event_id",
            "seat_id",
            unique=True,
            postgresql_where=text("holds_inventory"),
        ),
        ExcludeConstraint(
            ("resource_id", "="),
            ("period", "&&"),
            using="gist",
            where=text("holds_inventory"),
            name="booking_items_no_overlapping_slots",
        ),
        Index("booking_items_by_booking", "booking_id"),
        # Whether any booking points at a seat a re-imported layout drops (and the foreign key's
        # check when one is deleted), without reading every item.
        Index("booking_items_by_seat", "seat_id", postgresql_where=text("seat_id IS NOT NULL")),
        # What a general-admission placement sums under its event's lock.
        Index(
            "booking_items_general_claims", "event_id",
            postgresql_where=text("holds_inventory AND seat_id IS NULL AND event_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"))
    event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("events.id"))
    seat_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("seats.id"))
    resource_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("resources.id"))
    period: Mapped[Range[datetime] | None] = mapped_column(TSTZRANGE)
    price: Mapped[int]
    quantity: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    holds_inventory: Mapped[bool] = mapped_column(Boolean, default=False)


class BookingTransition(Base):
    __tablename__ = "booking_transitions"
    __table_args__ = (Index("booking_transitions_by_time", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(60))
    at: Mapped[datetime] = _now()


class Payment(Base):
    """The money side of one booking and the recovery point of its provider calls."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_captured <= amount_authorized", name="captured_within_authorized"),
        CheckConstraint("amount_refunded <= amount_captured", name="refunded_within_captured"),
        CheckConstraint("refund_requested <= amount_captured", name="refund_requested_within_captured"),
        Index("payments_authorized_since", "authorized_at", postgresql_where=text("status = 'authorized'")),
        # The payment audit's order: least recently checked first, among payments whose money can move.
        Index(
            "payments_to_audit", text("audited_at NULLS FIRST"), "booking_id",
            postgresql_where=text("intent_id IS NOT NULL AND status IN ('authorized', 'captured', 'refunded')"),
        ),
    )

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    provider: Mapped[str] = mapped_column(String(20), default="stripe")
    status: Mapped[str] = mapped_column(String(20), default="none")
    intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    client_secret: Mapped[str | None] = mapped_column(Text)
    checkout_url: Mapped[str | None] = mapped_column(Text)
    amount_authorized: Mapped[int] = mapped_column(Integer, default=0)
    amount_captured: Mapped[int] = mapped_column(Integer, default=0)
    amount_refunded: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    step: Mapped[str | None] = mapped_column(String(20))
    step_started_at: Mapped[datetime | None]
    #: The amount of the claimed call: a lapsed claim's retry sends the same request under its key.
    step_amount: Mapped[int | None] = mapped_column(Integer)
    decline_code: Mapped[str | None] = mapped_column(String(60))
    authorized_at: Mapped[datetime | None]
    #: The refund total operators asked for without cancelling (partial refunds).
    refund_requested: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    #: Refunds made so far: each refund has its own idempotency key, booking-<id>-refund-<n>.
    refund_number: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    #: What the customer must do next (3-D Secure), as Stripe describes it.
    next_action: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: The dispute on the charge, if any: {"id", "status", "amount", "reason"}.
    dispute: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: When the payment audit last compared these books with Stripe's record.
    audited_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _now()


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None]
    response_location: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


class OutboxMessage(Base):
    """A task committed with the request that caused it; deleted once a worker has run it."""

    __tablename__ = "outbox"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    queue_name: Mapped[str] = mapped_column(String(60))
    actor_name: Mapped[str] = mapped_column(String(100))
    args: Mapped[list[Any]]
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    relayed_at: Mapped[datetime | None]
    relay_count: Mapped[int] = mapped_column(Integer, default=0)


class WebhookEvent(Base):
    """The ledger of Stripe events: each delivery once (unique on Stripe's event id), kept whole."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("webhook_events_unapplied", "received_at", postgresql_where=text("processed_at IS NULL")),
        Index(
            "webhook_events_needing_attention", "outcome", "received_at",
            postgresql_where=text("outcome IN ('unmatched', 'mismatch', 'rejected')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    processed_at: Mapped[datetime | None]
    booking_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    #: applied, ignored, unmatched or rejected (a shape Stripe never sends), with the reason in `note`.
    outcome: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)


class WebhookEndpoint(Base):
    """Where a client wants to hear of its bookings; `secret` signs every delivery."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    #: Event types, or ["*"] for all.
    events: Mapped[list[str]] = mapped_column(ARRAY(String(60)))
    # Kept as given: it must sign, so a hash would not do (see docs/notifications.md).
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = _now()


class NotificationEvent(Base):
    """Something that happened to a booking that at least one endpoint subscribed to; `id` is the
    `evt_` id every delivery of it carries. `data` is rendered at its first delivery, then kept."""

    __tablename__ = "notification_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(60))
    # No foreign key: bookings move to the archive tables while their events stay.
    booking_id: Mapped[uuid.UUID] = mapped_column(index=True)
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id"))
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event to one endpoint: tried until a 2xx, or for three days."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("webhook_deliveries_log", "endpoint_id", text("created_at DESC"), text("id DESC")),
        # The console's failing endpoints: the few deliveries not (yet) delivered, not the many that were.
        Index("webhook_deliveries_undelivered", "endpoint_id", "created_at",
              postgresql_where=text("status <> 'succeeded'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("notification_events.id"))
    #: pending, succeeded or failed (given up after three days).
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    #: When a sweep may take it next; a sweep that takes it moves this past its lease.
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class BookingEmail(Base):
    """An email a customer is owed: one per booking and kind, sent by a worker, then marked."""

    __tablename__ = "booking_emails"
    __table_args__ = (
        Index("booking_emails_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    )

    booking_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    #: The status the booking moved to: confirmed, expired, cancelled or refunded.
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(320))
    #: pending, sent, failed (refused by the server, or three days of trying) or skipped (no SMTP).
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
