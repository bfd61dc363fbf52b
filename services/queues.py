"""Queue and actor names shared by the code that stages messages and the actors that run them.

Queues keep kinds of work apart so a rush of new bookings never starves captures, cancels or
webhooks: each queue gets its own consumer in every worker.
"""

from __future__ import annotations

from typing import NamedTuple


class Route(NamedTuple):
    queue_name: str
    actor_name: str


BOOKINGS = "bookings"
PAYMENTS = "payments"
WEBHOOKS = "webhooks"
MAINTENANCE = "maintenance"
#: Webhook deliveries and customer emails: slow receivers and mail servers wait here, apart.
NOTIFICATIONS = "notifications"

PLACE_BOOKING = Route(BOOKINGS, "place_booking")
CONFIRM_BOOKING = Route(PAYMENTS, "confirm_booking")
CANCEL_BOOKING = Route(PAYMENTS, "cancel_booking")
RETRY_PAYMENT = Route(PAYMENTS, "retry_payment")
REFUND_BOOKING = Route(PAYMENTS, "refund_booking")
CANCEL_EVENT_BOOKINGS = Route(PAYMENTS, "cancel_event_bookings")

EXPIRE_BOOKINGS = Route(MAINTENANCE, "expire_due_bookings")
RELAY_OUTBOX = Route(MAINTENANCE, "relay_outbox")
RECONCILE_BOOKINGS = Route(MAINTENANCE, "reconcile_stuck_bookings")
AUDIT_PAYMENTS = Route(MAINTENANCE, "audit_payments")
PURGE_IDEMPOTENCY_KEYS = Route(MAINTENANCE, "purge_idempotency_keys")
GUARD_AUTHORIZATIONS = Route(MAINTENANCE, "guard_old_authorizations")
ARCHIVE_BOOKINGS = Route(MAINTENANCE, "archive_terminal_bookings")
APPLY_WEBHOOK_EVENT = Route(WEBHOOKS, "apply_webhook_event")
DELIVER_WEBHOOKS = Route(NOTIFICATIONS, "deliver_due_webhooks")
SEND_EMAILS = Route(NOTIFICATIONS, "send_due_emails")
