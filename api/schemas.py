"""Request and response shapes. Pydantic validates requests and produces the OpenAPI schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.config import JsonDict

from services.input_types import NO_NUL, Instant, Strict

StripeId = Annotated[str, StringConstraints(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_]+$")]

class Customer(Strict):
    email: EmailStr
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)] | None = None


class PaymentRequest(Strict):
    # For the OpenAPI document, what `BookingCreate` checks: a payment method is for mode card
    # (the default mode) only. `properties` constrains only what is present.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"anyOf": [
            {"properties": {"mode": {"const": "card"}}},
            {"properties": {"payment_method": {"type": "null"}}},
        ]},
    )

    mode: Literal["card", "client", "checkout"] = "card"
    payment_method: StripeId | None = Field(
        default=None,
        description="A Stripe PaymentMethod id (never card data), for mode `card`. Without one the "
        "seats are held until POST /v1/bookings/{id}/payment gives one, or the hold expires.",
    )
    capture: Literal["on_confirm", "immediate"] = "on_confirm"


#: For the OpenAPI document, what `_one_kind_of_inventory` checks (pydantic cannot derive it):
#: exactly one kind of inventory is given, in full; the other kind's fields are absent or null.
#: Without this every field reads as optional to a client, and to a fuzzer.
ONE_KIND_OF_INVENTORY: JsonDict = {"oneOf": [
    {
        "required": ["event_id", "seat_ids"],
        "properties": {
            "event_id": {"type": "string"}, "seat_ids": {"type": "array"}, "quantity": {"type": "null"},
            "resource_id": {"type": "null"}, "starts_at": {"type": "null"}, "ends_at": {"type": "null"},
        },
    },
    {
        "required": ["event_id", "quantity"],
        "properties": {
            "event_id": {"type": "string"}, "quantity": {"type": "integer"}, "seat_ids": {"type": "null"},
            "resource_id": {"type": "null"}, "starts_at": {"type": "null"}, "ends_at": {"type": "null"},
        },
    },
    {
        "required": ["resource_id", "starts_at", "ends_at"],
        "properties": {
            "resource_id": {"type": "string"}, "starts_at": {"type": "string"}, "ends_at": {"type": "string"},
            "event_id": {"type": "null"}, "seat_ids": {"type": "null"}, "quantity": {"type": "null"},
        },
    },
]}


class BookingCreate(Strict):
    """Seats of an event (`event_id`, `seat_ids`), places at a general-admission event
    (`event_id`, `quantity`), or a time slot of a resource."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **ONE_KIND_OF_INVENTORY,
            "examples": [
                {
                    "event_id": "6f1c0a55-6a59-4d43-9a0c-3e6f5b2d8c11",
                    "seat_ids": ["1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed"],
                    "customer": {"email": "a@example.com", "name": "Ada"},
                    "payment": {"mode": "card", "payment_method": "pm_card_visa", "capture": "on_confirm"},
                }
            ]
        },
    )

    event_id: uuid.UUID | None = None
    seat_ids: Annotated[
        list[uuid.UUID], Field(min_length=1, max_length=20, json_schema_extra={"uniqueItems": True})
    ] | None = None
    quantity: Annotated[int, Field(ge=1, le=100)] | None = None
    resource_id: uuid.UUID | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    customer: Customer
    payment: PaymentRequest = Field(default_factory=PaymentRequest)

    @model_validator(mode="after")
    def _one_kind_of_inventory(self) -> BookingCreate:
        seats = self.event_id is not None or self.seat_ids is not None or self.quantity is not None
        slot = self.resource_id is not None or self.starts_at is not None or self.ends_at is not None
        if seats == slot:
            raise ValueError(
                "give either event_id with seat_ids or quantity, or resource_id, starts_at and ends_at"
            )
        if seats and (self.event_id is None or (self.seat_ids is None) == (self.quantity is None)):
            raise ValueError("an event booking needs event_id and either seat_ids or quantity")
        if seats and len(set(self.seat_ids or [])) != len(self.seat_ids or []):
            raise ValueError("seat_ids must not repeat a seat")
        if slot and (self.resource_id is None or self.starts_at is None or self.ends_at is None):
            raise ValueError("a time-slot booking needs resource_id, starts_at and ends_at")
        if slot and self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.payment.mode != "card" and self.payment.payment_method is not None:
            raise ValueError("payment.payment_method is only for mode card")
        return self


class PaymentRetry(Strict):
    payment_method: StripeId


class BookingListQuery(Strict):
    status: Literal[
        "requested", "awaiting_payment", "authorized", "confirmed",
        "rejected", "expired", "cancelled", "refunded",
    ] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    # Checked by api.representations.decode_cursor, which answers 400 `invalid_cursor`.
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page, as given")
    #: Operators search every client's bookings; a client's list is always its own.
    client_id: uuid.UUID | None = Field(default=None, description="Operators only: one client's bookings")
    email: Annotated[str, StringConstraints(max_length=320, pattern=NO_NUL)] | None = Field(
        default=None, description="The customer's email, exactly (case-insensitive)"
    )
    event_id: uuid.UUID | None = None
    resource_id: uuid.UUID | None = None


class BookingStatusOut(BaseModel):
    status: str


class NoQuery(Strict):
    """Routes that take no query parameters refuse any (400 `invalid_query`), as the others do."""


class OperatorCancel(Strict):
    """An operator's cancel: what a confirmed booking gets back (default: everything captured)."""

    refund: Literal["full", "policy", "none"] = "full"


class OperatorRefund(Strict):
    """A partial refund of a confirmed booking, in minor units."""

    amount: Annotated[int, Field(ge=1, le=2**31 - 1)]


class ResourceSearchQuery(Strict):
    category: Annotated[str, StringConstraints(max_length=60, pattern=NO_NUL)] | None = None
    near: Annotated[str, StringConstraints(pattern=r"^-?\d+(\.\d+)?,-?\d+(\.\d+)?$")] | None = Field(
        default=None, description="LAT,LNG"
    )
    radius_km: Annotated[float, Field(gt=0, le=20_000)] | None = None
    # Compared with an INTEGER column: a larger number was a 500 ("integer out of range").
    max_rate: Annotated[int, Field(ge=0, le=2_147_483_647)] | None = None
    available_from: Instant | None = None
    available_to: Instant | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, StringConstraints(max_length=400)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ResourceSearchQuery:
        if self.radius_km is not None and self.near is None:
            raise ValueError("radius_km needs near=LAT,LNG")
        if self.near is not None:
            lat, lng = (float(part) for part in self.near.split(","))
            if not (-90 <= lat <= 90 and -180 <= lng <= 180):
                raise ValueError("near must be a latitude in [-90, 90] and a longitude in [-180, 180]")
        if (self.available_from is None) != (self.available_to is None):
            raise ValueError("give both available_from and available_to, or neither")
        if self.available_from and self.available_to and self.available_to <= self.available_from:
            raise ValueError("available_to must be after available_from")
        return self

    def point(self) -> tuple[float, float] | None:
        if self.near is None:
            return None
        lat, lng = (float(part) for part in self.near.split(","))
        return lat, lng


EventTypeName = Literal[
    "booking.authorized", "booking.confirmed", "booking.rejected", "booking.expired", "booking.cancelled",
    "booking.refunded", "booking.payment_failed", "booking.payment_action_required", "booking.disputed", "*",
]


class WebhookEndpointCreate(Strict):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^https?://[^\x00\s]+$")] = Field(
        description="Where deliveries are POSTed: https (http in development), never a private address.",
    )
    events: Annotated[list[EventTypeName], Field(min_length=1, max_length=20)] = Field(
        description='The event types to deliver; `["*"]` for all.',
    )


class WebhookDeliveryQuery(Strict):
    limit: Annotated[int, Field(ge=1, le=100)] = 50


# Response shapes: documentation for /openapi.json and the contract tests.


class Period(BaseModel):
    starts_at: datetime
    ends_at: datetime


class BookingItemOut(BaseModel):
    kind: Literal["seat", "places", "slot"]
    seat_id: uuid.UUID | None = None
    quantity: int | None = None
    row: str | None = None
    number: int | None = None
    tier: str | None = None
    event_id: uuid.UUID | None = None
    resource_id: uuid.UUID | None = None
    period: Period | None = None
    price: int


class PaymentOut(BaseModel):
    status: str
    provider: Literal["stripe"] = "stripe"
    provider_ref: str | None
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    client_secret: str | None = None
    checkout_url: str | None = None
    next_action: dict[str, Any] | None = Field(default=None, description="3-D Secure: what the customer must do")
    decline_code: str | None = Field(default=None, description="Stripe's code for the last failed attempt")
    dispute: DisputeOut | None = None
    refund_blocked: Literal["charge_disputed"] | None = Field(
        default=None, description="A refund asked for waits: the dispute holds the money (Stripe refuses the refund)"
    )


class DisputeOut(BaseModel):
    status: str
    amount: int
    reason: str | None


class TransitionOut(BaseModel):
    status: str
    from_status: str | None
    at: datetime
    reason: str | None


class BookedVenueOut(BaseModel):
    id: uuid.UUID
    name: str


class BookedEventOut(BaseModel):
    id: uuid.UUID
    name: str
    starts_at: datetime
    ends_at: datetime
    venue: BookedVenueOut | None


class BookedResourceOut(BaseModel):
    id: uuid.UUID
    name: str
    timezone: str


class BookingOut(BaseModel):
    id: uuid.UUID
    status: str
    items: list[BookingItemOut]
    total_amount: int
    currency: str
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    reason: str | None
    history: list[TransitionOut]
    payment: PaymentOut
    customer: Customer
    event: BookedEventOut | None = None
    resource: BookedResourceOut | None = None


class BookingPage(BaseModel):
    items: list[BookingOut]
    next_cursor: str | None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    error: ErrorBody


class VenueOut(BaseModel):
    id: uuid.UUID
    name: str
    city: str | None


class EventOut(BaseModel):
    id: uuid.UUID
    ref: str | None = None
    name: str
    kind: Literal["seated", "general_admission"]
    venue: VenueOut | None
    starts_at: datetime
    ends_at: datetime
    sales_start_at: datetime
    sales_end_at: datetime
    status: Literal["on_sale", "scheduled", "sales_closed", "cancelled"]
    currency: str
    prices: dict[str, int]
    capacity: int | None = None
    held: int | None = None
    sold: int | None = None
    available: int | None = None
    cancellation: CancellationOut | None = Field(
        default=None, description="A cancelled event: its bookings, those settled, those an operator must look at"
    )


class CancellationOut(BaseModel):
    bookings: int
    done: int
    failed: int


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class SeatOut(BaseModel):
    id: uuid.UUID
    section: str | None = None
    row: str
    number: int
    tier: str
    price: int | None
    status: Literal["available", "held", "booked", "blocked"]


class SeatMap(BaseModel):
    event_id: uuid.UUID
    seats: list[SeatOut]
    summary: dict[str, int]


class ResourceOut(BaseModel):
    id: uuid.UUID
    name: str
    category: str
    lat: float | None
    lng: float | None
    rate_per_minute: int
    currency: str
    distance_km: float | None
    free_windows: list[Period]
    ref: str | None = None
    timezone: str | None = None
    weekly_hours: dict[str, list[tuple[str, str]]] | None = None
    exceptions: list[dict[str, Any]] | None = None
    buffer_minutes: int | None = None
    min_notice_minutes: int | None = None
    max_advance_days: int | None = None
    granularity_minutes: int | None = None


class ResourcePage(BaseModel):
    items: list[ResourceOut]
    next_cursor: str | None


# Examples shown by /docs for every route's answer (Swagger UI reads them from the schemas).
_BOOKING_EXAMPLE = {
    "id": "0b1e8f7a-8d4c-4f0e-9a53-2f0f4e3c1a77", "status": "authorized",
    "items": [{"kind": "seat", "seat_id": "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
               "event_id": "6f1c0a55-6a59-4d43-9a0c-3e6f5b2d8c11", "row": "A", "number": 7,
               "tier": "premium", "price": 12000}],
    "total_amount": 12000, "currency": "EUR", "expires_at": "2030-01-01T09:15:00+00:00",
    "created_at": "2030-01-01T09:00:00+00:00", "updated_at": "2030-01-01T09:00:01+00:00", "reason": None,
    "history": [
        {"status": "requested", "from_status": None, "at": "2030-01-01T09:00:00+00:00", "reason": None},
        {"status": "awaiting_payment", "from_status": "requested", "at": "2030-01-01T09:00:00.4+00:00",
         "reason": None},
        {"status": "authorized", "from_status": "awaiting_payment", "at": "2030-01-01T09:00:01+00:00",
         "reason": None},
    ],
    "payment": {"status": "authorized", "provider": "stripe", "provider_ref": "pi_3Nc9Xk2eZvKYlo2C",
                "amount_authorized": 12000, "amount_captured": 0, "amount_refunded": 0},
    "customer": {"email": "a@example.com", "name": "Ada"},
    "event": {"id": "6f1c0a55-6a59-4d43-9a0c-3e6f5b2d8c11", "name": "The Magic Flute",
              "starts_at": "2030-01-31T19:00:00+00:00", "ends_at": "2030-01-31T22:00:00+00:00",
              "venue": {"id": "9a4d1c2e-0c7b-4b8e-8f3e-5b7a2d1c0e9f", "name": "Grand Hall"}},
}
_EVENT_EXAMPLE = {
    "id": "6f1c0a55-6a59-4d43-9a0c-3e6f5b2d8c11", "name": "The Magic Flute",
    "ref": "magic-flute-2030-01-31", "kind": "seated",
    "venue": {"id": "9a4d1c2e-0c7b-4b8e-8f3e-5b7a2d1c0e9f", "name": "Grand Hall", "city": "Berlin"},
    "starts_at": "2030-01-31T19:00:00+00:00", "ends_at": "2030-01-31T22:00:00+00:00",
    "sales_start_at": "2029-12-01T09:00:00+00:00", "sales_end_at": "2030-01-31T19:00:00+00:00",
    "status": "on_sale", "currency": "EUR",
    "prices": {"premium": 12000, "standard": 8000, "economy": 4500},
}
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "BookingOut": [_BOOKING_EXAMPLE],
    "BookingPage": [{"items": [_BOOKING_EXAMPLE], "next_cursor": "MjAzMC0wMS0wMVQwOTowMDowMCswMDowMHw..."}],
    "ErrorOut": [{"error": {"code": "validation_error", "message": "the request body is not valid",
                            "details": [{"field": "customer.email", "code": "value_error",
                                         "message": "value is not a valid email address"}]}}],
    "EventOut": [_EVENT_EXAMPLE],
    "EventPage": [{"items": [_EVENT_EXAMPLE], "next_cursor": None}],
    "SeatMap": [{"event_id": "6f1c0a55-6a59-4d43-9a0c-3e6f5b2d8c11",
                 "seats": [{"id": "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed", "row": "A", "number": 7,
                            "tier": "premium", "price": 12000, "status": "held"}],
                 "summary": {"available": 119, "held": 1, "booked": 0, "total": 120}}],
    "ResourcePage": [{"items": [{
        "id": "3c0f5e7a-1d2b-4c3e-9f8a-7b6c5d4e3f2a", "name": "Room Spree", "category": "meeting_room",
        "lat": 52.5219, "lng": 13.4132, "rate_per_minute": 40, "currency": "EUR", "distance_km": 0.62,
        "free_windows": [{"starts_at": "2030-01-02T08:00:00+00:00", "ends_at": "2030-01-02T18:00:00+00:00"}],
    }], "next_cursor": None}],
    "PaymentRetry": [{"payment_method": "pm_card_visa"}],
}


class WebhookEndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    created_at: datetime
    secret: str | None = Field(default=None, description="Only in the answer to the registration.")


class WebhookEndpointList(BaseModel):
    items: list[WebhookEndpointOut]


class WebhookDeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: str
    type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime


class WebhookDeliveryLog(BaseModel):
    items: list[WebhookDeliveryOut]


class WebhookDeliveryRetried(BaseModel):
    id: uuid.UUID
    status: Literal["pending"]
