"""Our books against Stripe's, a batch at a time: money moved where no event told us.

Webhooks are how Stripe tells us, but an endpoint can be down longer than Stripe retries, or an
event type left out of the subscription: a capture or a refund made in the dashboard would then
never reach our books. This sweep reads back, least recently checked first, the intents that can
still move money (authorized, captured, partly refunded) and applies Stripe's record by the same
payment-fact rule as a webhook. One GET per booking; `SCHEDULE_AUDIT_SECONDS` sets the pace.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, not_, select

from db.models import Payment
from db.unit_of_work import UnitOfWork
from domain.errors import DomainError
from domain.payment_facts import apply_fact, intent_fact
from domain.payments import IntentState, PaymentStatus
from services.advance import advance_booking
from services.context import Context
from services.payment_steps import StepInProgress, record_intent_details

log = logging.getLogger(__name__)

#: Payments whose money can still move at Stripe: a hold to capture or lapse, a capture to refund.
MONEY_CAN_MOVE = (PaymentStatus.AUTHORIZED.value, PaymentStatus.CAPTURED.value, PaymentStatus.REFUNDED.value)


@dataclass
class AuditReport:
    checked: int = 0
    corrected: int = 0
    mismatched: int = 0


def audit_payments(ctx: Context, *, batch_size: int = 100) -> AuditReport:
    report = AuditReport()
    for booking_id, intent_id in _least_recently_checked(ctx, batch_size):
        state = ctx.payments().retrieve(intent_id)  # no lock held while Stripe answers
        outcome = _apply(ctx, booking_id, intent_id, state)
        report.checked += 1
        if outcome == "mismatch":
            report.mismatched += 1
        elif outcome == "corrected":
            report.corrected += 1
            _advance(ctx, booking_id)
    if report.corrected or report.mismatched:
        log.warning("payment audit: %s", report)
    return report


def _least_recently_checked(ctx: Context, batch_size: int) -> list[tuple[uuid.UUID, str]]:
    fully_refunded = and_(
        Payment.status == PaymentStatus.REFUNDED.value, Payment.amount_refunded >= Payment.amount_captured
    )
    with ctx.sessions() as session:
        rows = session.execute(
            select(Payment.booking_id, Payment.intent_id)
            .where(Payment.intent_id.is_not(None), Payment.step.is_(None))
            .where(Payment.status.in_(MONEY_CAN_MOVE), not_(fully_refunded))
            .order_by(Payment.audited_at.asc().nulls_first(), Payment.booking_id)
            .limit(batch_size)
        ).all()
    return [(row.booking_id, str(row.intent_id)) for row in rows]


def _apply(ctx: Context, booking_id: uuid.UUID, intent_id: str, state: IntentState) -> str:
    now: datetime = ctx.clock()
    with UnitOfWork(ctx.sessions) as uow:
        locked = uow.lock(booking_id)
        if locked is None or locked.payment.intent_id != intent_id or locked.payment.step is not None:
            return "skipped"  # archived, or a step is out: its own answer decides
        consequence = apply_fact(
            locked.facts(), locked.books(), intent_fact(state, reported=True),
            now=now, retry_hold=ctx.settings.retry_hold,
        )
        locked.payment.audited_at = now
        if consequence.mismatch:
            log.error("booking %s disagrees with Stripe: %s", booking_id, consequence.ignored)
        elif consequence.ignored is None:
            log.warning("booking %s corrected from Stripe's record (no event told us)", booking_id)
            record_intent_details(locked.payment, state)
            locked.apply(consequence, now)
        uow.commit()
    if consequence.mismatch:
        return "mismatch"
    return "unchanged" if consequence.ignored is not None else "corrected"


def _advance(ctx: Context, booking_id: uuid.UUID) -> None:
    try:
        advance_booking(ctx, booking_id)
    except (DomainError, StepInProgress):
        log.warning("booking %s left to reconciliation after the audit", booking_id, exc_info=True)
