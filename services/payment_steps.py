"""Provider steps: claimed in one transaction, called with no lock held, recorded in the next.

The claim (`payments.step` and `step_started_at`) is the recovery point. While it stands no
other step runs for the booking; if the worker dies, the claim lapses after the lease and the
next worker repeats the call with the same idempotency key, which the provider answers with
the first result instead of acting twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from db.models import Booking, Payment
from db.unit_of_work import LockedBooking
from domain.errors import PaymentDeclined
from domain.lifecycle import BookingStatus, RetryHold
from domain.payment_facts import Dispute, FactKind, PaymentFact, apply_fact, intent_fact
from domain.payments import (
    CheckoutSession,
    DisputeState,
    IntentState,
    PaymentMode,
    PaymentStatus,
    PaymentStep,
    idempotency_key,
    later_status,
)
from domain.ports import PaymentGateway
from domain.workflow import Step, lease_remaining

log = logging.getLogger(__name__)


class StepInProgress(Exception):
    """Another worker has claimed this booking's provider step; look again later."""

    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(f"a provider step is in progress; retry in {retry_after}")
        self.retry_after = retry_after


@dataclass(frozen=True)
class ProviderCall:
    """Everything the provider call needs, copied out of the transaction that claimed it."""

    step: Step
    booking_id: uuid.UUID
    amount: int
    currency: str
    payment_method: str | None
    intent_id: str | None
    attempt: int
    capture_immediately: bool
    payment_mode: PaymentMode = PaymentMode.CARD
    checkout_session_id: str | None = None
    pay_by: datetime | None = None
    #: Refunded when this call was claimed: a refund with no answer to read back from the provider
    #: (nothing to refund) records this total.
    refunded_before: int = 0
    #: The refund total the booking asks for (a refund is done once the provider has refunded as
    #: much, whoever made it): what operators or a cancel asked for, or all that was captured.
    refund_target: int = 0
    #: When this call's claim was taken: only that claim is released if the call fails.
    claimed_at: datetime | None = None
    #: A void of a Checkout payment with no authorized intent: its session is expired (which
    #: cancels its intent too, if any), since Stripe cancels such an intent only through its session.
    expire_session: bool = False
    #: Which refund of the payment this is (1, 2, ...): each refund has its own key.
    refund_number: int = 0

    @property
    def idempotency_key(self) -> str:
        number = self.refund_number if self.step is Step.REFUND else self.attempt
        key = idempotency_key(str(self.booking_id), PaymentStep(self.step.value), number)
        # Stripe keys span endpoints: expiring the session and cancelling the intent must differ.
        return f"{key}-session" if self.expire_session else key


@dataclass(frozen=True)
class ProviderResult:
    state: IntentState | None = None
    declined: PaymentDeclined | None = None
    checkout: CheckoutSession | None = None
    #: The decline is the provider not knowing the payment method, not the card's answer.
    method_invalid: bool = False
    #: A refund refused because this dispute holds the charge's money.
    dispute: DisputeState | None = None


def claim(locked: LockedBooking, step: Step, *, now: datetime, lease: timedelta) -> ProviderCall:
    """Claim `step` for the booking; a lapsed claim of the same step is taken over with its amount
    and its idempotency key, so the retried call is the same request to the provider."""
    booking, payment = locked.booking, locked.payment
    if payment.step == step.value:
        remaining = lease_remaining(payment.step_started_at, lease, now)
        if remaining > timedelta(0):
            raise StepInProgress(remaining)
    else:
        if step is Step.REFUND:
            payment.refund_number += 1  # a new refund, with its own key
        payment.step_amount = _amount(step, booking, payment)
    payment.step, payment.step_started_at, payment.updated_at = step.value, now, now
    return ProviderCall(
        step=step, booking_id=booking.id,
        amount=payment.step_amount if payment.step_amount is not None else _amount(step, booking, payment),
        currency=booking.currency, payment_method=booking.payment_method,
        intent_id=payment.intent_id, attempt=payment.attempt,
        capture_immediately=booking.capture_mode == "immediate",
        payment_mode=PaymentMode(booking.payment_mode),
        checkout_session_id=payment.checkout_session_id, pay_by=booking.expires_at,
        refunded_before=payment.amount_refunded, claimed_at=now, refund_number=payment.refund_number,
        refund_target=payment.refund_requested if booking.status == BookingStatus.CONFIRMED else payment.amount_captured,
        expire_session=payment.checkout_session_id is not None and (
            payment.intent_id is None or payment.status != PaymentStatus.AUTHORIZED
        ),
    )


def _amount(step: Step, booking: Booking, payment: Payment) -> int:
    if step is not Step.REFUND:
        return booking.total_amount
    left = payment.amount_captured - payment.amount_refunded
    if booking.status != BookingStatus.CONFIRMED:
        # Captured for a booking that was never delivered (paid after it expired): all of it.
        return left
    # Up to the total asked for (a cancel's, fixed when it was accepted, or operators' partial
    # refunds); what was refunded already, from Stripe's dashboard say, counts towards it.
    return max(0, min(left, payment.refund_requested - payment.amount_refunded))


def call_provider(gateway: PaymentGateway, call: ProviderCall) -> ProviderResult:
    """The one place a worker talks to the provider; never inside a transaction."""
    if call.step is Step.AUTHORIZE:
        return _start_payment(gateway, call)
    key = call.idempotency_key
    if call.step is Step.VOID and call.expire_session:
        assert call.checkout_session_id is not None
        gateway.expire_checkout(call.checkout_session_id, idempotency_key=key)
        return ProviderResult()
    assert call.intent_id is not None
    if call.step is Step.VOID:
        return ProviderResult(state=gateway.void(call.intent_id, idempotency_key=key))
    if call.step is Step.CAPTURE:
        return ProviderResult(state=gateway.capture(call.intent_id, amount=call.amount, idempotency_key=key))
    if call.amount == 0:
        return ProviderResult()  # nothing to refund: the books' total stands
    gateway.refund(call.intent_id, amount=call.amount, idempotency_key=key)
    # Stripe's running total, read after the refund: a refund made elsewhere meanwhile (the
    # dashboard) is in it, where refunded_before + this refund would miss it.
    return ProviderResult(state=gateway.retrieve(call.intent_id))


def _start_payment(gateway: PaymentGateway, call: ProviderCall) -> ProviderResult:
    booking_id, key = str(call.booking_id), call.idempotency_key
    if call.payment_mode is PaymentMode.CLIENT:
        return ProviderResult(state=gateway.create_intent(
            booking_id=booking_id, amount=call.amount, currency=call.currency,
            capture_immediately=call.capture_immediately, idempotency_key=key,
        ))
    if call.payment_mode is PaymentMode.CHECKOUT:
        assert call.pay_by is not None
        return ProviderResult(checkout=gateway.create_checkout(
            booking_id=booking_id, amount=call.amount, currency=call.currency,
            description=f"Booking {booking_id}", capture_immediately=call.capture_immediately,
            expires_at=call.pay_by, idempotency_key=key,
        ))
    assert call.payment_method is not None
    try:
        if call.intent_id is not None:
            # A retry confirms the intent that was declined rather than making another.
            state = gateway.confirm(call.intent_id, payment_method=call.payment_method, idempotency_key=key)
        else:
            state = gateway.authorize(
                booking_id=booking_id, amount=call.amount, currency=call.currency,
                payment_method=call.payment_method,
                capture_immediately=call.capture_immediately, idempotency_key=key,
            )
    except PaymentDeclined as declined:
        return ProviderResult(declined=declined)
    return ProviderResult(state=state)


def record(
    locked: LockedBooking, call: ProviderCall, result: ProviderResult, *, now: datetime, retry_hold: RetryHold
) -> None:
    """Write what the provider answered and move the booking on; a stale answer is dropped."""
    payment = locked.payment
    if (payment.step, payment.attempt) != (call.step.value, call.attempt) or (
        call.step is Step.REFUND and payment.refund_number != call.refund_number
    ):
        # Recorded already by a later claim of the step (this call outlived its lease), or moved
        # past it: a late answer must not overwrite what came after it. While the step is still
        # pending, any claim's answer is recorded: under one idempotency key they are the same.
        log.warning("dropped a late answer to %s: the step was recorded already", call.step,
                    extra={"booking_id": str(call.booking_id)})
        return
    payment.step, payment.step_started_at, payment.step_amount, payment.updated_at = None, None, None, now
    if result.checkout is not None:
        payment.checkout_session_id = result.checkout.session_id
        payment.checkout_url = result.checkout.url
        payment.status = later_status(PaymentStatus(payment.status), PaymentStatus.REQUIRES_ACTION).value
        return
    fact = _fact_of(locked, call, result)
    consequence = apply_fact(locked.facts(), locked.books(), fact, now=now, retry_hold=retry_hold)
    if consequence.mismatch:
        log.error("provider answer does not match booking %s: %s", call.booking_id, consequence.ignored)
    locked.apply(consequence, now)


def _fact_of(locked: LockedBooking, call: ProviderCall, result: ProviderResult) -> PaymentFact:
    """What a call's answer says, and the provider's ids it names, recorded on the payment."""
    payment = locked.payment
    if result.declined is not None:
        payment.intent_id = payment.intent_id or result.declined.intent_id
        return PaymentFact(
            FactKind.DECLINED, decline_code=str(result.declined.details or "card_declined"),
            method_invalid=result.method_invalid,
        )
    if result.dispute is not None:
        found = result.dispute
        return PaymentFact(FactKind.DISPUTED, currency=found.currency,
                           dispute=Dispute(found.dispute_id, found.status, found.amount, found.reason))
    if call.step is Step.REFUND:
        # A total, not an increment: Stripe's charge.refunded (a running total) may have been
        # applied first, and a retried refund answers again with the same refund.
        # Stripe's running total, read after the refund, is the truth: a retry after a lost
        # answer is answered with the same refund (counted once), and a refund made elsewhere
        # meanwhile is in it.
        total = result.state.amount_refunded if result.state is not None else call.refunded_before
        return PaymentFact(FactKind.REFUNDED, refunded=total)
    if result.state is None:
        return PaymentFact(FactKind.CHECKOUT_CLOSED)  # the void expired the checkout session
    record_intent_details(payment, result.state)
    return intent_fact(result.state)


def record_intent_details(payment: Payment, state: IntentState) -> None:
    """The intent's id, and what the customer needs to act on it (3-D Secure), as Stripe says."""
    payment.intent_id = state.intent_id
    payment.client_secret = state.client_secret or payment.client_secret
    waiting = state.status is PaymentStatus.REQUIRES_ACTION and state.next_action is not None
    payment.next_action = dict(state.next_action) if waiting and state.next_action else None


def release_claim(payment: Payment, call: ProviderCall, now: datetime) -> None:
    """The call failed without an answer: the step stays pending, free for the next try.

    Only this call's claim: if it outlived its lease, another worker's live claim stays."""
    if payment.step == call.step.value and payment.step_started_at == call.claimed_at:
        payment.step_started_at, payment.updated_at = None, now
