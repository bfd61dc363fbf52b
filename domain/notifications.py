"""What clients and customers are told, and the rules of telling them: which transitions make an
event or an email, how a delivery is signed, when a failed one is tried again, which addresses a
delivery may never reach."""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.lifecycle import BookingStatus


class EventType(enum.StrEnum):
    AUTHORIZED = "booking.authorized"
    CONFIRMED = "booking.confirmed"
    REJECTED = "booking.rejected"
    EXPIRED = "booking.expired"
    CANCELLED = "booking.cancelled"
    #: A full or a partial refund: the booking is refunded either way.
    REFUNDED = "booking.refunded"
    # Facts that are not transitions, recorded by the payment paths that learn them.
    PAYMENT_FAILED = "booking.payment_failed"
    PAYMENT_ACTION_REQUIRED = "booking.payment_action_required"
    DISPUTED = "booking.disputed"


#: An endpoint subscribed to this hears every type.
ALL_EVENTS = "*"

#: The transitions a client hears of: the status a booking moves to, and the event it makes.
EVENT_OF_STATUS: dict[BookingStatus, EventType] = {
    BookingStatus.AUTHORIZED: EventType.AUTHORIZED,
    BookingStatus.CONFIRMED: EventType.CONFIRMED,
    BookingStatus.REJECTED: EventType.REJECTED,
    BookingStatus.EXPIRED: EventType.EXPIRED,
    BookingStatus.CANCELLED: EventType.CANCELLED,
    BookingStatus.REFUNDED: EventType.REFUNDED,
}

#: The transitions a customer gets an email for; the email's kind is the status.
EMAILED_STATUSES = frozenset({
    BookingStatus.CONFIRMED, BookingStatus.EXPIRED, BookingStatus.CANCELLED, BookingStatus.REFUNDED,
})

#: Endpoints one client may register.
MAX_ENDPOINTS_PER_CLIENT = 20


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class EmailStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    #: No SMTP server is configured: recorded, never sent (and never sent later, when one is).
    SKIPPED = "skipped"


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """`Bookings-Signature`: Stripe's scheme, so a receiver can reuse Stripe's verification code."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff with jitter: attempt n waits between half and all of
    `first * 2**(n-1)`, capped at `longest`; after `give_up_after` from the event, no more."""

    first: timedelta = timedelta(seconds=10)
    longest: timedelta = timedelta(hours=6)
    give_up_after: timedelta = timedelta(days=3)

    def next_attempt(self, attempts: int, now: datetime, since: datetime, jitter: float) -> datetime | None:
        """When to try again after `attempts` failed ones (None: give up). `jitter` in [0, 1)
        spreads receivers' retries so a recovering receiver is not hit by all of them at once."""
        if now - since >= self.give_up_after:
            return None
        ceiling: timedelta = min(self.first * 2 ** min(attempts - 1, 32), self.longest)
        return now + ceiling * (0.5 + jitter / 2)


def is_forbidden_address(address: str) -> bool:
    """True for an address a delivery must never reach from production: loopback, private,
    link-local, multicast, reserved, unspecified, shared (CGNAT) or otherwise not global.
    IPv4 carried in IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it carries."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved
