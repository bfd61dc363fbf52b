"""What a real Stripe account sees besides our own calls: payments on other intents that carry a
booking's metadata, captures and refunds made in the dashboard, and signed events no Stripe could
have sent. Each is built against the local Stripe server with the real SDK, so its objects are
Stripe's own; the caller decides when (and whether) the matching events are delivered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import stripe

from testkit.stripe_webhooks import stripe_event

#: Marks the intents made here, so a campaign tells them from the booking's own attempts.
FOREIGN = {"made_by": "stripe_mischief"}


@dataclass(frozen=True)
class ForeignPayment:
    """Events about an intent that is not the booking's, though its metadata names the booking."""

    intent_id: str
    events: list[dict[str, Any]]


def one_cent_payment(client: stripe.StripeClient, booking_id: str) -> ForeignPayment:
    """A captured one-cent intent with the booking's id in its metadata: `payment_intent.succeeded`."""
    intent = client.v1.payment_intents.create(params={
        "amount": 1, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True,
        "metadata": {"booking_id": booking_id, **FOREIGN},
    })
    return ForeignPayment(intent.id, [stripe_event("payment_intent.succeeded", _expanded(client, intent.id))])


def canceled_unrelated_intent(client: stripe.StripeClient, booking_id: str, amount: int) -> ForeignPayment:
    """An authorization of the booking's amount, cancelled: `payment_intent.canceled`."""
    intent = client.v1.payment_intents.create(params={
        "amount": amount, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True,
        "capture_method": "manual", "metadata": {"booking_id": booking_id, **FOREIGN},
    })
    client.v1.payment_intents.cancel(intent.id)
    return ForeignPayment(intent.id, [stripe_event("payment_intent.canceled", _expanded(client, intent.id))])


def refund_of_another_intent(client: stripe.StripeClient, booking_id: str) -> ForeignPayment:
    """A refunded one-cent charge whose metadata names the booking: `charge.refunded`."""
    payment = one_cent_payment(client, booking_id)
    client.v1.refunds.create(params={"payment_intent": payment.intent_id})
    charge = _expanded(client, payment.intent_id)["latest_charge"]
    charge = {**charge, "metadata": {"booking_id": booking_id, **FOREIGN}}
    return ForeignPayment(payment.intent_id, [stripe_event("charge.refunded", charge)])


def dashboard_capture(client: stripe.StripeClient, intent_id: str) -> dict[str, Any]:
    """Capture an authorized intent as the dashboard would; returns Stripe's `payment_intent.succeeded`."""
    client.v1.payment_intents.capture(intent_id)
    return stripe_event("payment_intent.succeeded", _expanded(client, intent_id))


def dashboard_refund(client: stripe.StripeClient, intent_id: str, amount: int) -> dict[str, Any]:
    """Refund part or all of a captured intent as the dashboard would; returns `charge.refunded`."""
    client.v1.refunds.create(params={"payment_intent": intent_id, "amount": amount})
    return stripe_event("charge.refunded", _expanded(client, intent_id)["latest_charge"])


def _expanded(client: stripe.StripeClient, intent_id: str) -> dict[str, Any]:
    return dict(client.v1.payment_intents.retrieve(intent_id).to_dict())


def poison_events(intent_id: str, amount: int) -> dict[str, bytes]:
    """Signed bodies Stripe could not have sent, each naming a real intent, by what is wrong."""
    deep: Any = []
    for _ in range(255):
        deep = [deep]
    shapes: dict[str, dict[str, Any]] = {
        "data of the wrong shape": {**stripe_event("payment_intent.succeeded", {}), "data": [intent_id, amount]},
        "a string amount": stripe_event("payment_intent.succeeded", {
            "id": intent_id, "amount": amount, "amount_received": str(amount), "currency": "eur",
            "status": "succeeded"}),
        "an amount of 2^40": stripe_event("payment_intent.amount_capturable_updated", {
            "id": intent_id, "amount": amount, "amount_capturable": 2**40, "currency": "eur",
            "status": "requires_capture"}),
        "a negative refund": stripe_event("charge.refunded", {
            "id": "ch_" + intent_id[3:], "payment_intent": intent_id, "amount": amount, "amount_refunded": -500,
            "currency": "eur"}),
        "nesting 255 levels deep": stripe_event("payment_intent.succeeded", {
            "id": intent_id, "amount": amount, "currency": "eur", "extra": deep}),
    }
    return {name: json.dumps(event).encode() for name, event in shapes.items()}
