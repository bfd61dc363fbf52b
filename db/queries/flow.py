"""Booking flow for operators: where bookings stand and how fast they settle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Booking, BookingTransition, OutboxMessage, WebhookEvent
from db.queries.bookings import count_by_status
from domain.lifecycle import SETTLED, BookingStatus


@dataclass(frozen=True)
class BookingFlow:
    by_status: dict[str, int]
    oldest_requested_at: datetime | None
    settled_per_minute: list[tuple[datetime, int]]  # the last ten minutes, oldest first
    webhook_backlog: int
    outbox_backlog: int


def booking_flow(session: Session, now: datetime) -> BookingFlow:
    since = now - timedelta(minutes=10)
    minute = func.date_trunc("minute", BookingTransition.at)
    settled = session.execute(
        select(minute, func.count())
        .where(BookingTransition.at >= since, BookingTransition.to_status.in_([s.value for s in SETTLED]))
        .group_by(minute)
        .order_by(minute)
    ).all()
    return BookingFlow(
        by_status=count_by_status(session),
        oldest_requested_at=session.scalar(
            select(func.min(Booking.created_at)).where(Booking.status == BookingStatus.REQUESTED.value)
        ),
        settled_per_minute=[(at, count) for at, count in settled],
        webhook_backlog=session.scalar(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.processed_at.is_(None))
        ) or 0,
        outbox_backlog=session.scalar(select(func.count()).select_from(OutboxMessage)) or 0,
    )
