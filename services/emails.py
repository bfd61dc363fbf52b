"""Customer emails: one per (booking, kind), rendered from templates and sent by a worker.

Each email row is claimed, sent, then marked at once in its own transaction: only a worker
dying between the server's accepting it and the mark can send it twice (SMTP has no way to ask
"did you get this?"), and then both copies carry the same Message-ID, made from the booking and
the kind, so a mail system or client that drops repeats sees one. A sweep starts no send its
claim could not finish: what it has not sent when its lease nears its end goes back for the next
sweep, which would otherwise take it while this one still sends. A server that refuses the message (5xx)
marks it failed, never to be sent again; a server out of reach leaves it for later, on the
webhooks' schedule. Without SMTP_URL nothing is sent: due rows are marked `skipped`, so
configuring a server later does not mail customers about bookings long settled.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.smtp import MailNotSent, MailRefused
from db.engine import transaction
from db.models import Booking, Event, Payment, Resource, Seat, Venue
from db.queries.bookings import items_of
from db.queries.notifications import (
    DueEmail,
    claim_due_emails,
    record_email_attempt,
    release_email_claims,
)
from domain.notifications import EmailStatus, RetrySchedule
from services.context import Context

log = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=5)
#: No send starts with less of the lease left than this: a send that outlived the lease could
#: overlap another sweep's send of the same mail (the SMTP client's timeout is 30 s an exchange).
SEND_ALLOWANCE = timedelta(minutes=2)
BATCH = 20

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]), undefined=StrictUndefined, keep_trailing_newline=True,
)

SUBJECTS = {
    "confirmed": "Your booking is confirmed",
    "expired": "Your booking has expired",
    "cancelled": "Your booking is cancelled",
    "refunded": "Your booking has been refunded",
}
HEADLINES = {
    "confirmed": "Your booking is confirmed and paid. We look forward to seeing you.",
    "expired": "Your booking expired before it was paid; nothing was charged.",
    "cancelled": "Your booking is cancelled. Any hold on your card is released.",
    "refunded": "Your booking is cancelled and refunded as below.",
}
_ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"})


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


def send_due_emails(
    ctx: Context, mailer: Mailer | None, *, schedule: RetrySchedule = RetrySchedule(),
    jitter: Callable[[], float] = random.random, running: threading.Lock | None = None,
) -> int:
    """Send what is due, one claimed batch; the number of emails attempted.

    `running` is the process's: a sweep arriving while another runs returns at once, so a mail
    server that stalls holds one worker thread, not one per tick of the scheduler."""
    if running is None:
        return _send_batch(ctx, mailer, schedule, jitter)
    if not running.acquire(blocking=False):
        return 0
    try:
        return _send_batch(ctx, mailer, schedule, jitter)
    finally:
        running.release()


def _send_batch(ctx: Context, mailer: Mailer | None, schedule: RetrySchedule, jitter: Callable[[], float]) -> int:
    claimed_at = ctx.clock()
    with transaction(ctx.sessions) as session:
        due = claim_due_emails(session, claimed_at, claimed_at + CLAIM_LEASE, BATCH)
    for done, email in enumerate(due):
        if ctx.clock() >= claimed_at + CLAIM_LEASE - SEND_ALLOWANCE:
            with transaction(ctx.sessions) as session:
                release_email_claims(session, due[done:], ctx.clock())
            return done
        status, error = _send(ctx, mailer, email)
        now = ctx.clock()
        next_at = schedule.next_attempt(email.attempts + 1, now, email.created_at, jitter())
        if status is EmailStatus.PENDING and next_at is None:
            status = EmailStatus.FAILED
        with transaction(ctx.sessions) as session:
            record_email_attempt(session, email, status=status.value, error=error, next_attempt_at=next_at or now, now=now)
        log.log(logging.INFO if status is EmailStatus.SENT else logging.WARNING,
                "email %s for booking %s: %s %s", email.kind, email.booking_id, status.value, error or "")
    return len(due)


def _send(ctx: Context, mailer: Mailer | None, email: DueEmail) -> tuple[EmailStatus, str | None]:
    if mailer is None:
        return EmailStatus.SKIPPED, "SMTP_URL is not set"
    with ctx.sessions() as session:
        message = compose(session, email, ctx.settings.email_from)
    if message is None:
        return EmailStatus.FAILED, "the booking is gone"
    try:
        mailer.send(message)
    except MailRefused as refused:
        return EmailStatus.FAILED, str(refused)[:500]
    except MailNotSent as failure:
        return EmailStatus.PENDING, str(failure)[:500]
    return EmailStatus.SENT, None


def compose(session: Session, email: DueEmail, sender: str) -> EmailMessage | None:
    details = booking_details(session, email)
    if details is None:
        return None
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = SUBJECTS[email.kind], sender, email.recipient
    message["Message-ID"] = message_id(email, sender)
    message.set_content(_TEMPLATES.get_template("booking_email.txt").render(details))
    message.add_alternative(_TEMPLATES.get_template("booking_email.html").render(details), subtype="html")
    return message


def message_id(email: DueEmail, sender: str) -> str:
    """The same for every attempt at one (booking, kind): a repeat is recognisable as one."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return f"<booking-{email.booking_id}.{email.kind}@{domain}>"


def booking_details(session: Session, email: DueEmail) -> dict[str, Any] | None:
    """What, when, where, how much and what was refunded, for the templates."""
    booking, payment = session.get(Booking, email.booking_id), session.get(Payment, email.booking_id)
    if booking is None or payment is None:
        return None
    items = items_of(session, booking.id)
    if booking.event_id is not None:
        event = session.get_one(Event, booking.event_id)
        venue = session.get_one(Venue, event.venue_id)
        seats = session.scalars(select(Seat).where(Seat.id.in_([i.seat_id for i in items if i.seat_id]))).all()
        what, starts, ends = event.name, event.starts_at, event.ends_at
        where = f"{venue.name}, {venue.city}" if venue.city else venue.name
        lines = [f"Row {s.row}, seat {s.number} ({s.tier})" for s in sorted(seats, key=lambda s: (s.row, s.number))]
    else:
        resource = session.get_one(Resource, booking.resource_id)
        period = items[0].period
        assert period is not None and period.lower is not None and period.upper is not None
        what, starts, ends, where, lines = resource.name, period.lower, period.upper, resource.name, []
    return {
        "name": booking.customer_name, "headline": HEADLINES[email.kind], "what": what, "items": lines,
        "when": f"{starts.astimezone(UTC):%A %d %B %Y, %H:%M} – {ends.astimezone(UTC):%H:%M} UTC", "where": where,
        "amount": money(booking.total_amount, booking.currency),
        "refund": money(payment.amount_refunded, booking.currency) if payment.amount_refunded else None,
        "booking_id": str(booking.id),
    }


def money(amount: int, currency: str) -> str:
    code = currency.upper()
    return f"{amount} {code}" if code in _ZERO_DECIMAL else f"{amount / 100:.2f} {code}"
