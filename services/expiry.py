"""Expiring held bookings in batches: a bounded number of transactions and Stripe calls.

Each batch is one short transaction that locks due bookings (SKIP LOCKED, so two sweeps never
take the same booking), frees their inventory, marks them expired and claims a void for those
whose card is authorized. The voids then go to Stripe with no lock held, a few at a time, and
one more transaction records their answers. Per batch: two transactions, and one Stripe call
per live authorization. The rules are the same `next_step` decisions a single booking follows.

Most expired holds need nothing after their expiry (no authorization, no checkout page): they
are locked as snapshots and moved by the unit of work in one statement for the whole batch
(`UnitOfWork.move_each`); only those with a void to claim are locked in full, a statement for all
of them. Per-booking Python work is what made the sweep slow, not the database.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from db.models import Booking, Payment
from db.unit_of_work import UnitOfWork
from domain.errors import DomainError
from domain.lifecycle import EXPIRABLE, BookingStatus
from domain.workflow import Step, next_step
from services import payment_steps
from services.advance import advance_booking, call_with_recovery, claim_step
from services.context import Context
from services.payment_steps import ProviderCall, ProviderResult, StepInProgress

log = logging.getLogger(__name__)

#: Voids sent to Stripe at once: enough to hide latency, few enough to respect rate limits.
VOID_CONCURRENCY = 8


@dataclass
class ExpiryReport:
    expired: int = 0
    voided: int = 0
    batches: int = 0


def expire_due_bookings(ctx: Context, *, batch_size: int = 500, max_batches: int = 1000) -> ExpiryReport:
    report = ExpiryReport()
    after: uuid.UUID | None = None
    for _ in range(max_batches):
        # Paged by id, so bookings a batch takes but does not expire cannot stop the sweep.
        last, expired, voids = _expire_batch(ctx, batch_size, after)
        if expired:
            report.batches += 1
            report.expired += expired
            report.voided += _void(ctx, voids)
        if last is None:
            break
        after = last
    return report


def _expire_batch(
    ctx: Context, batch_size: int, after: uuid.UUID | None
) -> tuple[uuid.UUID | None, int, list[ProviderCall]]:
    """Expire due bookings among the next `batch_size` by id; the last id taken (None at the end)."""
    now = ctx.clock()
    # Left to others: an accepted confirm or cancel (their workers carry them out), and a provider
    # call still to be recorded, which decides first (next_step).
    due_now = [
        Booking.status.in_([s.value for s in EXPIRABLE]), Booking.expires_at <= now,
        Booking.confirm_requested_at.is_(None), Booking.cancel_requested_at.is_(None),
        Payment.step.is_(None),
    ]
    if after is not None:
        due_now.append(Booking.id > after)
    with UnitOfWork(ctx.sessions) as uow:
        taken = uow.lock_snapshots_where(*due_now, limit=batch_size)
        due = [locked for locked in taken if next_step(locked.snapshot, now) is Step.EXPIRE]
        # What each needs once expired: nothing (most), or a void to claim.
        after_expiry = {locked.id: next_step(dataclasses.replace(locked.snapshot, status=BookingStatus.EXPIRED), now)
                        for locked in due}
        uow.move_each([locked for locked in due if after_expiry[locked.id] is None], BookingStatus.EXPIRED, now,
                      reason="hold_expired")
        more = [locked.id for locked in due if after_expiry[locked.id] is not None]
        voids = []
        for locked in uow.lock_where(Booking.id.in_(more), limit=len(more)) if more else []:
            locked.move(BookingStatus.EXPIRED, now, reason="hold_expired")
            if next_step(locked.snapshot(), now) is Step.VOID:
                voids.append(claim_step(ctx, locked, Step.VOID))
        uow.commit()
    last = taken[-1].id if len(taken) == batch_size else None
    return last, len(due), voids


def _void(ctx: Context, calls: list[ProviderCall]) -> int:
    if not calls:
        return 0
    with ThreadPoolExecutor(max_workers=VOID_CONCURRENCY) as pool:
        results = list(pool.map(lambda call: _void_one(ctx, call), calls))
    answered = [(call, result) for call, result in zip(calls, results, strict=True) if result is not None]
    now = ctx.clock()
    unfinished = []
    with UnitOfWork(ctx.sessions) as uow:
        for call, result in sorted(answered, key=lambda pair: pair[0].booking_id):
            locked = uow.lock(call.booking_id)
            if locked is not None:
                payment_steps.record(locked, call, result, now=now, retry_hold=ctx.settings.retry_hold)
                if next_step(locked.snapshot(), now) is not None:
                    unfinished.append(locked.id)
        uow.commit()
    for booking_id in unfinished:
        # A void refused because the money was taken meanwhile (captured in Stripe's dashboard):
        # the read-back recorded it, and the booking that released its seat gives it back now.
        _advance_quietly(ctx, booking_id)
    return len(answered)


def _advance_quietly(ctx: Context, booking_id: uuid.UUID) -> None:
    try:
        advance_booking(ctx, booking_id)
    except (DomainError, StepInProgress):
        log.warning("booking %s left to reconciliation after its void", booking_id, exc_info=True)


def _void_one(ctx: Context, call: ProviderCall) -> ProviderResult | None:
    try:
        return call_with_recovery(ctx, call.booking_id, call)
    except DomainError:
        # Left claimed-and-released: the reconciliation sweep finishes this void later.
        return None
