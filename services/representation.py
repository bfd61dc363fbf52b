"""A booking's JSON representation: what the API answers and what a webhook delivery carries
(the shape is documented in api.schemas.BookingOut)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from db.models import BookingItem, Payment
from db.queries.bookings import BookingView
from db.queries.catalog import EventLabel, ResourceLabel
from domain.payments import dispute_blocks_refunds


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def booking_body(view: BookingView) -> dict[str, Any]:
    booking, payment = view.booking, view.payment
    return {
        "id": str(booking.id),
        "status": booking.status,
        "items": [_item(item, view) for item in view.items],
        "total_amount": booking.total_amount,
        "currency": booking.currency,
        "expires_at": iso(booking.expires_at),
        "created_at": iso(booking.created_at),
        "updated_at": iso(booking.updated_at),
        "reason": booking.reason,
        "history": [
            {"status": t.to_status, "from_status": t.from_status, "at": iso(t.at), "reason": t.reason}
            for t in view.history
        ],
        "payment": {
            "status": payment.status,
            "provider": payment.provider,
            "provider_ref": payment.intent_id,
            "amount_authorized": payment.amount_authorized,
            "amount_captured": payment.amount_captured,
            "amount_refunded": payment.amount_refunded,
            **_payment_details(booking.payment_mode, payment),
        },
        "customer": {"email": booking.customer_email, "name": booking.customer_name},
        **_booked(view.booked),
    }


def _booked(label: EventLabel | ResourceLabel | None) -> dict[str, Any]:
    """What was booked, named: the event (with its venue and times) or the resource."""
    if isinstance(label, EventLabel):
        venue = {"id": str(label.venue_id), "name": label.venue_name} if label.venue_id else None
        return {"event": {"id": str(label.id), "name": label.name, "starts_at": iso(label.starts_at),
                          "ends_at": iso(label.ends_at), "venue": venue}}
    if isinstance(label, ResourceLabel):
        return {"resource": {"id": str(label.id), "name": label.name, "timezone": label.timezone}}
    return {}


def _payment_details(mode: str, payment: Payment) -> dict[str, Any]:
    """What the front end needs to let the customer act, and why a payment failed or is disputed."""
    details: dict[str, Any] = {}
    # A card that needs 3-D Secure hands the payment to the customer, as mode client always does.
    if mode == "client" or payment.status == "requires_action" and payment.next_action:
        details["client_secret"] = payment.client_secret
    if payment.status == "requires_action" and payment.next_action:
        details["next_action"] = payment.next_action
    if mode == "checkout":
        details["checkout_url"] = payment.checkout_url
    if payment.decline_code:
        details["decline_code"] = payment.decline_code
    if payment.dispute:
        details["dispute"] = {key: payment.dispute.get(key) for key in ("status", "amount", "reason")}
        if payment.refund_requested > payment.amount_refunded and dispute_blocks_refunds(payment.dispute.get("status")):
            # A refund was asked for and waits for the dispute (Stripe's refusal, named as Stripe does).
            details["refund_blocked"] = "charge_disputed"
    return details


def _item(item: BookingItem, view: BookingView) -> dict[str, Any]:
    if item.event_id is not None and item.seat_id is None:
        return {"kind": "places", "event_id": str(item.event_id), "quantity": item.quantity, "price": item.price}
    if item.seat_id is not None:
        seat = view.seats.get(item.seat_id)
        return {
            "kind": "seat", "seat_id": str(item.seat_id), "event_id": str(item.event_id),
            "row": seat.row if seat else None, "number": seat.number if seat else None,
            "tier": seat.tier if seat else None, "price": item.price,
        }
    assert item.period is not None
    return {
        "kind": "slot", "resource_id": str(item.resource_id),
        "period": {"starts_at": iso(item.period.lower), "ends_at": iso(item.period.upper)},
        "price": item.price,
    }
