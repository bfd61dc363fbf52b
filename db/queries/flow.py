"""Booking flow for operators: where bookings stand, how fast they settle, what is waiting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.models import Booking, OutboxMessage, WebhookEvent
from db.queries.bookings import count_by_status
from domain.lifecycle import SETTLED, BookingStatus

#: Webhook outcomes an operator has to look at: the event did not fit any booking, disagreed
#: with what we know, or could not have come from Stripe.
WEBHOOK_PROBLEMS = ("unmatched", "mismatch", "rejected")


@dataclass(frozen=True)
class BookingFlow:
    by_status: dict[str, int]
    oldest_requested_at: datetime | None
    settled_last_hour: int
    settle_p50_seconds: float | None  # requested → first settled status, bookings settled in the last hour
    settle_p99_seconds: float | None
    webhook_backlog: int  # ledger rows not yet applied
    webhook_problems: dict[str, int]  # every outcome of WEBHOOK_PROBLEMS, zeros included
    outbox_backlog: int


# A booking counts once, at its first settled status: one authorized an hour ago and confirmed
# now settled long ago. The index on transitions by time keeps the window cheap.
_SETTLE_LATENCY = text("""
    WITH settled AS (
        SELECT t.booking_id, min(t.at) AS settled_at FROM booking_transitions t
        WHERE t.at >= :since AND t.to_status = ANY(:settled) GROUP BY t.booking_id
    )
    SELECT count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.settled_at - b.created_at)),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.settled_at - b.created_at))
    FROM settled s JOIN bookings b ON b.id = s.booking_id
    WHERE NOT EXISTS (SELECT 1 FROM booking_transitions e WHERE e.booking_id = s.booking_id
                      AND e.to_status = ANY(:settled) AND e.at < :since)
""")


def booking_flow(session: Session, now: datetime) -> BookingFlow:
    settled, p50, p99 = session.execute(
        _SETTLE_LATENCY, {"since": now - timedelta(hours=1), "settled": sorted(s.value for s in SETTLED)}
    ).one()
    problems: dict[str, int] = dict.fromkeys(WEBHOOK_PROBLEMS, 0)
    problems |= {str(outcome): count for outcome, count in session.execute(
        select(WebhookEvent.outcome, func.count()).where(WebhookEvent.outcome.in_(WEBHOOK_PROBLEMS))
        .group_by(WebhookEvent.outcome)
    )}
    return BookingFlow(
        by_status=count_by_status(session),
        oldest_requested_at=session.scalar(
            select(func.min(Booking.created_at)).where(Booking.status == BookingStatus.REQUESTED.value)
        ),
        settled_last_hour=settled,
        settle_p50_seconds=round(p50, 3) if p50 is not None else None,
        settle_p99_seconds=round(p99, 3) if p99 is not None else None,
        webhook_backlog=session.scalar(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.processed_at.is_(None))
        ) or 0,
        webhook_problems=problems,
        outbox_backlog=session.scalar(select(func.count()).select_from(OutboxMessage)) or 0,
    )
