"""What the shipped alert rules watch, read from PostgreSQL when Prometheus scrapes the API.

Each figure is one indexed query or a small table's count, so a scrape stays in the
milliseconds with a hundred thousand bookings. Windowed figures (the last 15 minutes) are
gauges rather than counters: archiving moves rows out of the hot tables, and a counter
read from a shrinking table would look like a reset to Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

#: Window of `recent_payments`: long enough to hold a few payments on a quiet day.
PAYMENT_WINDOW = timedelta(minutes=15)
#: Webhook outcomes that need an operator (the ledger's `outcome`).
ATTENTION_OUTCOMES = ("unmatched", "mismatch", "rejected")
#: A decline of a booking's first attempt rejects it with one of these reasons.
DECLINE_REASONS = ("payment_declined", "payment_method_invalid")


@dataclass(frozen=True)
class PipelineGauges:
    outbox_messages: int
    outbox_oldest_age_seconds: float
    webhooks_unapplied: int
    webhooks_oldest_unapplied_age_seconds: float
    webhooks_needing_attention: dict[str, int]  # every outcome of ATTENTION_OUTCOMES, zeros included
    payments_paid_recently: int
    payments_declined_recently: int
    payments_stuck: int  # a Stripe step claimed longer ago than reconciliation waits
    scheduler_leaders: int


_BACKLOGS = text("""
    SELECT (SELECT count(*) FROM outbox),
           (SELECT min(created_at) FROM outbox),
           (SELECT count(*) FROM webhook_events WHERE processed_at IS NULL),
           (SELECT min(received_at) FROM webhook_events WHERE processed_at IS NULL),
           (SELECT count(*) FROM payments WHERE step IS NOT NULL AND step_started_at < :stuck_before)
""")
_PAYMENTS = text("""
    SELECT count(*) FILTER (WHERE to_status = 'authorized'
                            OR (to_status = 'confirmed' AND from_status = 'awaiting_payment')),
           count(*) FILTER (WHERE to_status = 'rejected' AND reason = ANY(:declines))
    FROM booking_transitions WHERE at >= :since
""")
# A bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low) and objsubid 1.
_LEADERS = text("""
    SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
    WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()
      AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid) AND l.objsubid = 1
""")
_ATTENTION = text("""
    SELECT outcome, count(*) FROM webhook_events WHERE outcome = ANY(:outcomes) GROUP BY outcome
""")


def pipeline_gauges(session: Session, now: datetime, *, stuck_after: timedelta, leader_lock: int) -> PipelineGauges:
    outbox, outbox_oldest, unapplied, unapplied_oldest, stuck = session.execute(
        _BACKLOGS, {"stuck_before": now - stuck_after}
    ).one()
    paid, declined = session.execute(
        _PAYMENTS, {"since": now - PAYMENT_WINDOW, "declines": list(DECLINE_REASONS)}
    ).one()
    leaders = session.scalar(_LEADERS, {"high": leader_lock >> 32, "low": leader_lock & 0xFFFF_FFFF})
    attention = dict.fromkeys(ATTENTION_OUTCOMES, 0) | {
        str(outcome): count for outcome, count in session.execute(_ATTENTION, {"outcomes": list(ATTENTION_OUTCOMES)})
    }
    return PipelineGauges(
        outbox_messages=outbox, outbox_oldest_age_seconds=_age(outbox_oldest, now),
        webhooks_unapplied=unapplied, webhooks_oldest_unapplied_age_seconds=_age(unapplied_oldest, now),
        webhooks_needing_attention=attention, payments_paid_recently=paid,
        payments_declined_recently=declined, payments_stuck=stuck, scheduler_leaders=leaders or 0,
    )


def _age(oldest: datetime | None, now: datetime) -> float:
    return max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
