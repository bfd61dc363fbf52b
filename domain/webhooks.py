"""What a payment provider's event names: a trigger to look, never a fact to apply.

An event tells us that something happened to a payment; what happened is read back from the
provider's own record of the payment the booking recorded (`services.webhooks`), and applied by
the one rule of `domain.payment_facts`. All an event contributes is which object to look at.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Events about a PaymentIntent, or naming one (a refunded charge): look the intent up.
INTENT_EVENTS = frozenset({
    "payment_intent.amount_capturable_updated",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
    "charge.refunded",
})

#: Events about a hosted Checkout Session: look the session (and its intent) up.
CHECKOUT_EVENTS = frozenset({"checkout.session.completed", "checkout.session.expired"})

#: Events about a dispute of the booking's charge: look the dispute up.
DISPUTE_EVENTS = frozenset({"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"})

HANDLED_TYPES = INTENT_EVENTS | CHECKOUT_EVENTS | DISPUTE_EVENTS


@dataclass(frozen=True)
class ProviderEvent:
    """The ids an event names, and the booking its metadata claims (never trusted alone)."""

    type: str
    intent_id: str | None = None
    checkout_session_id: str | None = None
    booking_id: str | None = None
    dispute_id: str | None = None

    @property
    def handled(self) -> bool:
        return self.type in HANDLED_TYPES
