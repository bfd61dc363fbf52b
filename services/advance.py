"""Drive one booking forward until it needs nothing more: the service behind every actor.

Each transaction locks the booking, records what the last provider call answered, performs
the local steps that follow (hold, cancel, expire) and claims the next provider step; the
provider is then called with no lock held. A placement with a card hold is therefore two
short transactions around one Stripe call.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from config.logging import bound
from db.unit_of_work import LockedBooking, UnitOfWork
from domain.errors import (
    ChargeDisputed,
    PaymentDeclined,
    PaymentProviderUnavailable,
    PaymentRequestInvalid,
    PaymentRequestRejected,
)
from domain.lifecycle import BookingStatus
from domain.payments import dispute_blocks_refunds
from domain.workflow import PROVIDER_STEPS, Step, next_step
from services import payment_steps
from services.context import Context
from services.outbox import StagedMessage
from services.payment_steps import ProviderCall, ProviderResult
from services.placement import hold_inventory

log = logging.getLogger(__name__)

#: A booking's whole life is a handful of steps; more means a bug, not a long story.
MAX_STEPS = 12


def advance_booking(ctx: Context, booking_id: uuid.UUID) -> BookingStatus | None:
    """Perform every step the booking needs now; returns its status (None if unknown)."""
    with bound(booking_id=str(booking_id)):
        call, status = _settle(ctx, booking_id, None, None)
        for _ in range(MAX_STEPS):
            if call is None:
                log.info("booking is %s", status, extra={"outcome": str(status)})
                return status
            log.info("calling the provider: %s", call.step)
            result = call_with_recovery(ctx, booking_id, call)
            call, status = _settle(ctx, booking_id, call, result)
    raise RuntimeError(f"booking {booking_id} did not settle in {MAX_STEPS} steps")


def call_with_recovery(ctx: Context, booking_id: uuid.UUID, call: ProviderCall) -> ProviderResult:
    """Call the provider; a refusal is answered by reading the provider's own record."""
    try:
        return payment_steps.call_provider(ctx.payments(), call)
    except ChargeDisputed as refused:
        return _dispute_read_back(ctx, call, refused)
    except PaymentRequestRejected as rejected:
        if isinstance(rejected, PaymentRequestInvalid) and call.step is Step.AUTHORIZE and call.intent_id is None:
            # The booking's payment method or amount refused: its answer, as a decline is.
            log.warning("%s of booking %s refused: %s", call.step, booking_id, rejected.details)
            return ProviderResult(declined=PaymentDeclined(
                str(rejected), details=rejected.details, intent_id=rejected.intent_id
            ), method_invalid=rejected.details == "resource_missing")
        if call.step is Step.REFUND and call.intent_id is not None:
            return _refund_read_back(ctx, call, rejected)
        if call.expire_session:
            return _session_read_back(ctx, call, rejected)
        if call.intent_id is None:
            # Nothing to read back (no intent yet): the message goes to the dead-letter queue
            # for an operator.
            _release_claim(ctx, call)
            raise
        # The provider refused because the intent is not where we thought (the customer paid
        # while we voided, Stripe voided an old authorization): its own record wins.
        log.warning("%s of booking %s refused; reconciling with the provider", call.step, booking_id)
        return ProviderResult(state=ctx.payments().retrieve(call.intent_id))
    except PaymentProviderUnavailable:
        # No answer: free the claim so a retry can run at once with the same idempotency key.
        _release_claim(ctx, call)
        raise


def _refund_read_back(ctx: Context, call: ProviderCall, rejected: PaymentRequestRejected) -> ProviderResult:
    """A refused refund is done if the provider has refunded as much already (from its dashboard,
    or a refund whose answer was lost). If it has refunded more than the books knew when the call
    was claimed, that refund elsewhere is why it refused (more than the charge had left): its total
    is recorded, and what is still due goes as a new refund with its own key. Anything else needs
    an operator (dead-letter queue)."""
    assert call.intent_id is not None
    state = ctx.payments().retrieve(call.intent_id)
    if state.amount_refunded >= call.refund_target or state.amount_refunded > call.refunded_before:
        return ProviderResult(state=state)
    _release_claim(ctx, call)
    raise rejected


def _dispute_read_back(ctx: Context, call: ProviderCall, refused: ChargeDisputed) -> ProviderResult:
    """Stripe refuses to refund a charge a dispute holds: that dispute, read back, is the answer.
    Recorded on the booking, it stops the refund (no retry) until the dispute ends; a lost one
    settles a cancel, since the money went back to the customer through it."""
    assert call.intent_id is not None
    holding = [d for d in ctx.payments().disputes_of(call.intent_id) if dispute_blocks_refunds(d.status)]
    if not holding:
        _release_claim(ctx, call)
        raise refused  # refused for a dispute Stripe does not show: an operator must look
    log.warning("refund of booking %s refused: dispute %s is %s", call.booking_id, holding[0].dispute_id,
                holding[0].status)
    return ProviderResult(dispute=holding[0])


def _session_read_back(ctx: Context, call: ProviderCall, rejected: PaymentRequestRejected) -> ProviderResult:
    """A refused expiry of a Checkout Session: the session is closed already, either expired by
    Stripe (the void is done) or completed by the customer (its intent is the booking's payment
    now, to be read and then voided or refunded like any other)."""
    assert call.checkout_session_id is not None
    checkout = ctx.payments().retrieve_checkout(call.checkout_session_id)
    if checkout.intent_id is not None:
        return ProviderResult(state=ctx.payments().retrieve(checkout.intent_id))
    if checkout.status == "expired":
        return ProviderResult()  # recorded as the session closed
    _release_claim(ctx, call)
    raise rejected


def _release_claim(ctx: Context, call: ProviderCall) -> None:
    with UnitOfWork(ctx.sessions) as uow:
        locked = uow.lock(call.booking_id)
        if locked is not None:
            payment_steps.release_claim(locked.payment, call, ctx.clock())
        uow.commit()


def _settle(
    ctx: Context, booking_id: uuid.UUID, call: ProviderCall | None, result: ProviderResult | None
) -> tuple[ProviderCall | None, BookingStatus | None]:
    now = ctx.clock()
    with UnitOfWork(ctx.sessions) as uow:
        locked = uow.lock(booking_id)
        if locked is None:
            log.warning("booking %s not found", booking_id)
            return None, None
        if call is not None and result is not None:
            payment_steps.record(locked, call, result, now=now, retry_hold=ctx.settings.retry_hold)
        released: list[StagedMessage] = []
        next_call = _perform_local_steps(ctx, uow, locked, now, released)
        uow.commit()
    ctx.dispatch(released)
    return next_call, locked.status


def _perform_local_steps(
    ctx: Context, uow: UnitOfWork, locked: LockedBooking, now: datetime, released: list[StagedMessage]
) -> ProviderCall | None:
    """Perform the steps that need no provider; claim the next provider step, if any. Messages
    for other bookings (a lapsed hold expired by the placement) go to `released`."""
    for _ in range(MAX_STEPS):
        step = next_step(locked.snapshot(), now)
        if step is None:
            return None
        if step in PROVIDER_STEPS:
            return claim_step(ctx, locked, step)
        if step is Step.HOLD:
            released += hold_inventory(uow, locked, now=now, hold_ttl=ctx.settings.hold_ttl)
        elif step is Step.CANCEL:
            locked.move(BookingStatus.CANCELLED, now, reason=locked.booking.cancel_reason or "cancelled_by_client")
        elif step is Step.EXPIRE:
            locked.move(BookingStatus.EXPIRED, now, reason="hold_expired")
        elif step is Step.SETTLE_CHARGEBACK:
            locked.move(BookingStatus.REFUNDED, now, reason="dispute_lost")
        else:  # pragma: no cover - every local step is handled above
            raise AssertionError(step)
    raise RuntimeError(f"booking {locked.id} looped in local steps")


def claim_step(ctx: Context, locked: LockedBooking, step: Step) -> ProviderCall:
    return payment_steps.claim(locked, step, now=ctx.clock(), lease=ctx.settings.payment_step_lease)
