"""What the booking needs to know about a payment, independent of the provider."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from domain.errors import InvalidState


class PaymentMode(enum.StrEnum):
    CARD = "card"
    CLIENT = "client"
    CHECKOUT = "checkout"


class CaptureMode(enum.StrEnum):
    ON_CONFIRM = "on_confirm"
    IMMEDIATE = "immediate"


class RefundChoice(enum.StrEnum):
    """What a cancel of a confirmed booking gives back."""

    POLICY = "policy"  # by the time-based refund policy (a client's cancel)
    FULL = "full"  # everything captured (an operator's default)
    NONE = "none"


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

#: How far the money has moved. An intent only moves forward (awaiting the customer or declined,
#: then authorized, then captured or canceled); refunded is ours, after a capture.
_PROGRESS = {
    PaymentStatus.NONE: 0, PaymentStatus.REQUIRES_ACTION: 1, PaymentStatus.FAILED: 1,
    PaymentStatus.AUTHORIZED: 2, PaymentStatus.CAPTURED: 3, PaymentStatus.CANCELED: 3, PaymentStatus.REFUNDED: 4,
}


def later_status(recorded: PaymentStatus, reported: PaymentStatus) -> PaymentStatus:
    """The status to keep when `reported` comes in after `recorded` was written: an answer about
    an earlier moment (a worker's, overtaken by a webhook about the same intent) does not move
    the money back."""
    return reported if _PROGRESS[reported] >= _PROGRESS[recorded] else recorded


#: A new payment method is taken while the customer holds the next move: before the first
#: attempt, after a decline, or while an intent waits for the customer (3-D Secure, client mode).
RETRYABLE = frozenset({PaymentStatus.NONE, PaymentStatus.FAILED, PaymentStatus.REQUIRES_ACTION})


def ensure_new_attempt_allowed(status: PaymentStatus, *, step_pending: bool, has_payment_method: bool) -> None:
    """One payment attempt at a time: a new one is refused while one is being made, or accepted
    and not yet made (no status yet, a method to try)."""
    if step_pending or status not in RETRYABLE or (status is PaymentStatus.NONE and has_payment_method):
        raise InvalidState(
            "a payment attempt for this booking is already in progress",
            details={"payment_status": str(status)},
        )


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
    #: What the intent is for; None where the provider's answer did not say.
    amount: int | None = None
    currency: str | None = None
    amount_refunded: int = 0
    #: Why the last attempt on the intent failed (the provider's decline code).
    decline_code: str | None = None
    #: What the customer must do next (3-D Secure), as the provider describes it.
    next_action: dict[str, object] | None = None


#: Where a dispute ends with the money ours again: a refund can follow. Under any other dispute
#: (open, or lost: the money went back through it) Stripe refuses to refund (`charge_disputed`).
DISPUTES_ALLOWING_REFUNDS = frozenset({"won", "warning_closed"})


def dispute_blocks_refunds(status: str | None) -> bool:
    return status is not None and status not in DISPUTES_ALLOWING_REFUNDS


@dataclass(frozen=True)
class DisputeState:
    """The provider's view of a dispute (chargeback) on a charge."""

    dispute_id: str
    intent_id: str | None
    status: str
    amount: int
    currency: str
    reason: str | None = None


@dataclass(frozen=True)
class CheckoutState:
    """The provider's view of one hosted checkout session."""

    session_id: str
    #: open, complete or expired
    status: str
    paid: bool
    intent_id: str | None
    amount: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class CheckoutSession:
    """A hosted payment page the customer is sent to."""

    session_id: str
    url: str


def idempotency_key(booking_id: str, step: PaymentStep, attempt: int = 1) -> str:
    """Stable across retries of one step, different for each step and payment attempt."""
    return f"booking-{booking_id}-{step}-{attempt}"
