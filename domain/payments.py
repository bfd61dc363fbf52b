"""What the booking needs to know about a payment, independent of the provider."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PaymentMode(enum.StrEnum):
    CARD = "card"
    CLIENT = "client"
    CHECKOUT = "checkout"


class CaptureMode(enum.StrEnum):
    ON_CONFIRM = "on_confirm"
    IMMEDIATE = "immediate"


class PaymentStatus(enum.StrEnum):
    """Where the money stands; mirrors the provider's record once it answers."""

    NONE = "none"  # nothing asked of the provider yet
    REQUIRES_ACTION = "requires_action"  # created; the customer must act (client/checkout)
    AUTHORIZED = "authorized"  # funds held, capturable
    CAPTURED = "captured"
    CANCELED = "canceled"  # authorization released
    FAILED = "failed"  # declined
    REFUNDED = "refunded"  # partly or fully


#: Payment statuses in which the customer's money is held and must be released or captured.
LIVE_AUTHORIZATION = frozenset({PaymentStatus.AUTHORIZED})


class PaymentStep(enum.StrEnum):
    """A recovery point: the provider call a worker started and may not have recorded."""

    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


@dataclass(frozen=True)
class IntentState:
    """The provider's view of one payment intent."""

    intent_id: str
    status: PaymentStatus
    amount_authorized: int
    amount_captured: int
    client_secret: str | None = None


@dataclass(frozen=True)
class CheckoutSession:
    """A hosted payment page the customer is sent to."""

    session_id: str
    url: str


def idempotency_key(booking_id: str, step: PaymentStep, attempt: int = 1) -> str:
    """Stable across retries of one step, different for each step and payment attempt."""
    return f"booking-{booking_id}-{step}-{attempt}"
