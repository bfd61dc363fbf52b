"""The actors: each takes an id (a booking's, a ledger event's) or nothing (the scheduled ones),
runs one service, and returns.

They are safe to run twice or late: `advance_booking` looks at where the booking stands and
does only what is left. Retries are for transient faults (a lock timeout, Stripe unreachable,
another worker mid-step); a business outcome such as a declined card ends the step normally;
Stripe rejecting a request as invalid is not retried and lands in the dead-letter queue.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

import dramatiq

from adapters.smtp import SmtpMailer
from adapters.stripe import provider_event
from adapters.webhooks import WebhookSender
from domain.errors import PaymentRequestRejected
from services import (
    audit,
    emails,
    event_cancellation,
    expiry,
    maintenance,
    notifications,
    outbox,
    queues,
    webhooks,
)
from services.advance import advance_booking
from services.context import Context
from services.payment_steps import StepInProgress
from services.queues import Route
from tasks.broker import make_inspector
from tasks.notification_metrics import delivery_metrics


def _retry_later(fn: Callable[[str], None]) -> Callable[[str], None]:
    @wraps(fn)
    def run(entity_id: str) -> None:
        try:
            fn(entity_id)
        except StepInProgress as busy:
            # Come back when the other worker's claim would lapse, to finish it if that worker died.
            delay = busy.retry_after + timedelta(seconds=1)
            raise dramatiq.Retry(str(busy), delay=int(delay.total_seconds() * 1000)) from None

    return run


def _declare(broker: dramatiq.Broker, route: Route, fn: Callable[[str], None], **options: Any) -> dramatiq.Actor[Any, Any]:
    return dramatiq.Actor(
        _retry_later(fn), broker=broker, actor_name=route.actor_name,
        queue_name=route.queue_name, priority=0,
        options={"throws": (PaymentRequestRejected,), "max_retries": 20, **options},
    )


def declare_actors(broker: dramatiq.Broker, ctx: Context) -> dict[str, dramatiq.Actor[Any, Any]]:
    inspector = make_inspector(broker)

    def place_booking(booking_id: str) -> None:
        """A new booking request: claim its inventory, then hold the card."""
        advance_booking(ctx, uuid.UUID(booking_id))

    def confirm_booking(booking_id: str) -> None:
        """The client confirmed: capture the authorized amount."""
        advance_booking(ctx, uuid.UUID(booking_id))

    def cancel_booking(booking_id: str) -> None:
        """The client cancelled: release the inventory and the hold, or refund."""
        advance_booking(ctx, uuid.UUID(booking_id))

    def retry_payment(booking_id: str) -> None:
        """The client gave a new payment method for a booking awaiting payment."""
        advance_booking(ctx, uuid.UUID(booking_id))

    def refund_booking(booking_id: str) -> None:
        """An operator refunded part of a confirmed booking."""
        advance_booking(ctx, uuid.UUID(booking_id))

    def cancel_event_bookings(event_id: str) -> None:
        """An operator cancelled an event: cancel its live bookings, a batch at a time."""
        left = event_cancellation.cancel_event_bookings(ctx, uuid.UUID(event_id))
        if left:
            # Held by other workers during the pass: come back for them.
            raise dramatiq.Retry(f"{left} bookings of event {event_id} still to cancel", delay=5000)

    def expire_due_bookings() -> None:
        """Expire holds that ran out, in batches (scheduled every minute)."""
        expiry.expire_due_bookings(ctx)

    def guard_old_authorizations() -> None:
        """Cancel or capture card holds before Stripe's 7-day limit (scheduled hourly)."""
        maintenance.guard_old_authorizations(ctx)

    def archive_terminal_bookings() -> None:
        """Move old terminal bookings to the archive tables (scheduled daily)."""
        maintenance.archive_terminal_bookings(ctx)

    def relay_outbox() -> None:
        """Re-send messages committed but never delivered (scheduled every few seconds)."""
        busy = [q.name for q in inspector.depths() if q.ready or q.delayed or q.in_flight]
        outbox.relay(ctx.sessions, ctx.dispatch, older_than=ctx.settings.outbox_relay_after, now=ctx.clock(),
                     busy_queues=busy)

    def reconcile_stuck_bookings() -> None:
        """Finish bookings whose worker died or whose message was lost (scheduled)."""
        maintenance.reconcile_stuck_bookings(ctx, older_than=ctx.settings.reconcile_after)

    def audit_payments() -> None:
        """Compare the books with Stripe's record, least recently checked first (scheduled)."""
        audit.audit_payments(ctx)

    def purge_idempotency_keys() -> None:
        """Forget idempotency keys older than their TTL (hourly)."""
        maintenance.purge_idempotency_keys(ctx)

    deliverer = notifications.Deliverer(WebhookSender(allow_private=ctx.settings.webhook_allow_private_urls),
                                        observe=delivery_metrics)
    mailer = SmtpMailer(ctx.settings.smtp_url) if ctx.settings.smtp_url else None
    emailing = threading.Lock()

    def deliver_due_webhooks() -> None:
        """POST due webhook deliveries, signed (scheduled every few seconds)."""
        notifications.deliver_due_webhooks(ctx, deliverer)

    def send_due_emails() -> None:
        """Send the customer emails that are due (scheduled every few seconds)."""
        emails.send_due_emails(ctx, mailer, running=emailing)

    def apply_webhook_event(event_id: str) -> None:
        """A Stripe event in the ledger: apply it once, in whatever order it came."""
        webhooks.process_event(ctx, event_id, provider_event)

    periodic = {"max_retries": 0, "max_age": 10 * 60_000, "time_limit": 30 * 60_000}
    scheduled = [
        (queues.EXPIRE_BOOKINGS, expire_due_bookings),
        (queues.RELAY_OUTBOX, relay_outbox),
        (queues.RECONCILE_BOOKINGS, reconcile_stuck_bookings),
        (queues.AUDIT_PAYMENTS, audit_payments),
        (queues.PURGE_IDEMPOTENCY_KEYS, purge_idempotency_keys),
        (queues.GUARD_AUTHORIZATIONS, guard_old_authorizations),
        (queues.ARCHIVE_BOOKINGS, archive_terminal_bookings),
    ]
    actors = [
        # A missed tick is not retried: the next one does the same work.
        dramatiq.Actor(fn, broker=broker, actor_name=route.actor_name, queue_name=route.queue_name,
                       priority=0, options=periodic)
        for route, fn in scheduled
    ] + [
        # After any booking work waiting in the same worker (a higher number is a lower priority).
        dramatiq.Actor(fn, broker=broker, actor_name=route.actor_name, queue_name=route.queue_name,
                       priority=10, options=periodic)
        for route, fn in ((queues.DELIVER_WEBHOOKS, deliver_due_webhooks), (queues.SEND_EMAILS, send_due_emails))
    ] + [
        _declare(broker, queues.APPLY_WEBHOOK_EVENT, apply_webhook_event),
        _declare(broker, queues.PLACE_BOOKING, place_booking),
        _declare(broker, queues.CONFIRM_BOOKING, confirm_booking),
        _declare(broker, queues.CANCEL_BOOKING, cancel_booking),
        _declare(broker, queues.RETRY_PAYMENT, retry_payment),
        _declare(broker, queues.REFUND_BOOKING, refund_booking),
        _declare(broker, queues.CANCEL_EVENT_BOOKINGS, cancel_event_bookings),
    ]
    return {actor.actor_name: actor for actor in actors}
