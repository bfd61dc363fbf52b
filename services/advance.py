"""Drive one booking forward until it needs nothing more: the service behind every actor.

Each transaction locks the booking, records what the last provider call answered, performs
the local steps that follow (hold, cancel, expire) and claims the next provider step; the
provider is then called with no lock held. A placement with a card hold is therefore two
short transactions around one Stripe call.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

from config.logging import bound
from db.engine import transaction
from db.models import Booking, Payment
from db.queries.bookings import snapshot, starts_at_of
from db.queries.locked_bookings import lock_booking
from domain.errors import (
    PaymentDeclined,
    PaymentProviderUnavailable,
    PaymentRequestInvalid,
    PaymentRequestRejected,
)
from domain.lifecycle import BookingStatus
from domain.workflow import PROVIDER_STEPS, Step, next_step
from services import payment_steps
from services.context import Context
from services.payment_steps import ProviderCall, ProviderResult
from services.placement import hold_inventory, release_inventory

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
    except PaymentRequestRejected as rejected:
        if isinstance(rejected, PaymentRequestInvalid) and call.step is Step.AUTHORIZE and call.intent_id is None:
            # The booking's payment method or amount refused: its answer, as a decline is.
            log.warning("%s of booking %s refused: %s", call.step, booking_id, rejected.details)
            return ProviderResult(declined=PaymentDeclined(
                str(rejected), details=rejected.details, intent_id=rejected.intent_id
            ))
        if call.intent_id is None or call.step is Step.REFUND:
            # Nothing to read back (no intent yet), or nothing the intent can tell (a refused
            # refund): the message goes to the dead-letter queue for an operator.
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


def _release_claim(ctx: Context, call: ProviderCall) -> None:
    with transaction(ctx.sessions) as session:
        locked = lock_booking(session, call.booking_id)
        if locked is not None:
            payment_steps.release_claim(locked[1], call, ctx.clock())


def _settle(
    ctx: Context, booking_id: uuid.UUID, call: ProviderCall | None, result: ProviderResult | None
) -> tuple[ProviderCall | None, BookingStatus | None]:
    now = ctx.clock()
    with transaction(ctx.sessions) as session:
        locked = lock_booking(session, booking_id)
        if locked is None:
            log.warning("booking %s not found", booking_id)
            return None, None
        booking, payment = locked
        if call is not None and result is not None:
            payment_steps.record(
                session, booking, payment, call, result,
                now=now, retry_hold=ctx.settings.retry_hold,
            )
        for _ in range(MAX_STEPS):
            step = next_step(snapshot(booking, payment), now)
            if step is None:
                return None, BookingStatus(booking.status)
            if step in PROVIDER_STEPS:
                return claim_step(ctx, session, booking, payment, step), BookingStatus(booking.status)
            _perform_local(ctx, session, booking, step)
    raise RuntimeError(f"booking {booking_id} looped in local steps")


def claim_step(ctx: Context, session: Session, booking: Booking, payment: Payment, step: Step) -> ProviderCall:
    starts_at = None
    if step is Step.REFUND:
        starts_at = starts_at_of(session, booking)
    return payment_steps.claim(
        booking, payment, step, now=ctx.clock(), lease=ctx.settings.payment_step_lease,
        refund_policy=ctx.settings.refund_policy, inventory_starts_at=starts_at,
    )


def _perform_local(ctx: Context, session: Session, booking: Booking, step: Step) -> None:
    now = ctx.clock()
    if step is Step.HOLD:
        hold_inventory(session, booking, now=now, hold_ttl=ctx.settings.hold_ttl)
    elif step is Step.CANCEL:
        release_inventory(session, booking, BookingStatus.CANCELLED, now=now, reason="cancelled_by_client")
    elif step is Step.EXPIRE:
        release_inventory(session, booking, BookingStatus.EXPIRED, now=now, reason="hold_expired")
    else:  # pragma: no cover - PROVIDER_STEPS are claimed, never performed here
        raise AssertionError(step)
