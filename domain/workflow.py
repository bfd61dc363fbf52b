"""Which step a booking needs next, decided from a snapshot of its state.

Every actor (placement, confirm, cancel, payment retry, reconciliation) runs the same loop:
take a snapshot under lock, ask `next_step`, perform it, repeat until nothing is left. A
redelivered or duplicated message therefore finds the work already done and stops, and a
worker that died between "called Stripe" and "recorded the result" is finished by whoever
looks next: the unfinished step is still recorded on the payment.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.lifecycle import EXPIRABLE, FINAL, BookingStatus
from domain.payments import (
    CaptureMode,
    PaymentMode,
    PaymentStatus,
    PaymentStep,
    dispute_blocks_refunds,
)

S = BookingStatus


class Step(enum.StrEnum):
    HOLD = "hold"  # claim the inventory (or reject the request)
    AUTHORIZE = "authorize"  # ask the provider for a hold on the card (Stripe call)
    CAPTURE = "capture"  # take the authorized money (Stripe call)
    CANCEL = "cancel"  # the client or an operator cancelled: release inventory
    EXPIRE = "expire"  # the hold ran out: release inventory
    VOID = "void"  # release a live authorization (Stripe call)
    REFUND = "refund"  # a confirmed booking was cancelled or partly refunded (Stripe call)
    SETTLE_CHARGEBACK = "settle_chargeback"  # a cancel whose refund a lost dispute made already


#: Payment states a finished booking must not leave behind: money held, or a payment the
#: customer could still complete.
VOIDABLE = frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.REQUIRES_ACTION})

#: Steps that call the payment provider; they are claimed before the call and recorded after.
PROVIDER_STEPS = frozenset({Step.AUTHORIZE, Step.CAPTURE, Step.VOID, Step.REFUND})


@dataclass(frozen=True)
class BookingSnapshot:
    status: BookingStatus
    payment_mode: PaymentMode
    capture_mode: CaptureMode
    has_payment_method: bool
    payment_status: PaymentStatus
    pending_step: PaymentStep | None  # a provider call started and not yet recorded
    expires_at: datetime | None
    confirm_requested: bool
    cancel_requested: bool
    amount_captured: int = 0
    amount_refunded: int = 0
    #: The provider holds an intent or checkout session for this booking.
    has_provider_payment: bool = False
    #: The refund total operators asked for without cancelling (partial refunds).
    refund_requested: int = 0
    #: The status of the dispute on the charge, if any (Stripe's: needs_response, won, lost...).
    dispute_status: str | None = None


def next_step(booking: BookingSnapshot, now: datetime) -> Step | None:
    """The one thing to do next for this booking, or None when it needs nothing more."""
    # An unrecorded provider call is finished first: its outcome decides everything else.
    if booking.pending_step is not None:
        return Step(booking.pending_step.value)
    status = booking.status
    if status is S.REQUESTED:
        return Step.CANCEL if booking.cancel_requested else Step.HOLD
    if status in FINAL:
        if booking.payment_status in VOIDABLE or (
            # A declined intent stays open to another attempt, and one whose retry was accepted
            # but not yet made (status reset to none) is still in the customer's hands: close it.
            booking.payment_status in (PaymentStatus.FAILED, PaymentStatus.NONE) and booking.has_provider_payment
        ):
            return Step.VOID
        if status is not S.REFUNDED and booking.amount_captured > booking.amount_refunded and not (
            dispute_blocks_refunds(booking.dispute_status)
        ):
            # Money taken for a booking that ended without being delivered goes back in full.
            return Step.REFUND
        return None
    if status is S.CONFIRMED:
        refund_due = booking.refund_requested > booking.amount_refunded
        if refund_due and dispute_blocks_refunds(booking.dispute_status):
            # Stripe refuses to refund while a dispute holds the money. A lost one gave it back to
            # the customer, which is the refund a cancel asked for; otherwise the dispute's end
            # decides (a won one lets the refund go ahead).
            lost = booking.dispute_status == "lost"
            return Step.SETTLE_CHARGEBACK if booking.cancel_requested and lost else None
        if booking.cancel_requested or refund_due:
            return Step.REFUND
        return None
    # awaiting_payment or authorized from here on
    if booking.cancel_requested:
        return Step.CANCEL
    if status is S.AUTHORIZED and booking.confirm_requested:
        # An accepted confirm wins over an expiry that comes later.
        return Step.CAPTURE
    if status in EXPIRABLE and booking.expires_at is not None and booking.expires_at <= now:
        return Step.EXPIRE
    if status is S.AUTHORIZED and booking.capture_mode is CaptureMode.IMMEDIATE:
        return Step.CAPTURE
    if status is S.AWAITING_PAYMENT and booking.payment_status is PaymentStatus.NONE:
        # Card: create and confirm a hold. Client: create the intent the front end confirms.
        # Checkout: create the hosted session. A card booking without a method waits for one.
        if booking.payment_mode is not PaymentMode.CARD or booking.has_payment_method:
            return Step.AUTHORIZE
    return None


def lease_remaining(started_at: datetime | None, lease: timedelta, now: datetime) -> timedelta:
    """How long another worker's claim on a provider step still stands (zero if it lapsed)."""
    if started_at is None:
        return timedelta(0)
    return max(timedelta(0), started_at + lease - now)
