"""What a payment provider's event means for a booking, given where its payment stands.

Events arrive late, twice and out of order. Each is interpreted against the payment's current
state: an event that would move the payment backwards (a failure after a capture, a cancel
after a capture) or repeat what is already recorded is ignored, with the reason kept.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from domain.lifecycle import BookingStatus
from domain.payments import PaymentStatus

P = PaymentStatus


class EffectKind(enum.StrEnum):
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    FAILED = "failed"
    CANCELED = "canceled"
    REFUNDED = "refunded"
    CHECKOUT_EXPIRED = "checkout_expired"
    IGNORED = "ignored"


@dataclass(frozen=True)
class ProviderEvent:
    """The facts of one provider event that matter to a booking."""

    type: str
    intent_id: str | None = None
    checkout_session_id: str | None = None
    booking_id: str | None = None
    amount: int = 0  # capturable, received or refunded, by event type
    failure_code: str | None = None
    paid: bool = False  # a completed Checkout Session that already captured


@dataclass(frozen=True)
class Effect:
    kind: EffectKind
    amount: int = 0
    reason: str | None = None


HANDLED_TYPES = frozenset({
    "payment_intent.amount_capturable_updated",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
    "checkout.session.completed",
    "checkout.session.expired",
})

UNPAID = frozenset({P.NONE, P.REQUIRES_ACTION, P.FAILED})


def effect_of(event: ProviderEvent, payment: PaymentStatus, booking: BookingStatus, refunded: int) -> Effect:
    kind = event.type
    if kind not in HANDLED_TYPES:
        return _ignored(f"{kind} is not an event this service acts on")
    if kind == "payment_intent.amount_capturable_updated" or (
        kind == "checkout.session.completed" and not event.paid
    ):
        return Effect(EffectKind.AUTHORIZED, event.amount) if payment in UNPAID else _late(kind, payment)
    if kind == "payment_intent.succeeded" or kind == "checkout.session.completed":
        if payment in (P.CAPTURED, P.REFUNDED):
            return _late(kind, payment)
        return Effect(EffectKind.CAPTURED, event.amount)
    if kind == "payment_intent.payment_failed":
        # Only a customer-confirmed intent fails by event; a card attempt's decline is known at
        # once, and after a retry (status none again) a failure of the previous attempt is stale.
        if payment is P.REQUIRES_ACTION and booking is BookingStatus.AWAITING_PAYMENT:
            return Effect(EffectKind.FAILED, reason=event.failure_code or "card_declined")
        return _late(kind, payment)
    if kind == "payment_intent.canceled":
        if payment in (P.CAPTURED, P.REFUNDED, P.CANCELED):
            return _late(kind, payment)
        return Effect(EffectKind.CANCELED)
    if kind == "charge.refunded":
        if event.amount <= refunded:
            return _ignored(f"refunds of {event.amount} are already recorded")
        return Effect(EffectKind.REFUNDED, event.amount)
    # checkout.session.expired
    if booking is BookingStatus.AWAITING_PAYMENT and payment in UNPAID:
        return Effect(EffectKind.CHECKOUT_EXPIRED)
    return _late(kind, payment)


def _late(kind: str, payment: PaymentStatus) -> Effect:
    return _ignored(f"{kind} arrived after the payment was already {payment}")


def _ignored(reason: str) -> Effect:
    return Effect(EffectKind.IGNORED, reason=reason)
