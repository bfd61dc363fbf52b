"""The booking state machine: the statuses a booking moves through and the moves allowed.

    requested -> awaiting_payment -> authorized -> confirmed -> refunded
        |              |                 |
        v              v                 v
    rejected      expired/cancelled  expired/cancelled
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.errors import InvalidState


class BookingStatus(enum.StrEnum):
    REQUESTED = "requested"
    AWAITING_PAYMENT = "awaiting_payment"
    AUTHORIZED = "authorized"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


S = BookingStatus

ALLOWED_TRANSITIONS: dict[BookingStatus, frozenset[BookingStatus]] = {
    # A decline of the first payment attempt rejects a booking that was just placed.
    S.REQUESTED: frozenset({S.AWAITING_PAYMENT, S.REJECTED, S.CANCELLED}),
    S.AWAITING_PAYMENT: frozenset(
        {S.AUTHORIZED, S.CONFIRMED, S.REJECTED, S.EXPIRED, S.CANCELLED}
    ),
    S.AUTHORIZED: frozenset({S.CONFIRMED, S.EXPIRED, S.CANCELLED}),
    S.CONFIRMED: frozenset({S.REFUNDED}),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset(),
}

#: Statuses in which the booking's seats or time slot are claimed.
HOLDS_INVENTORY = frozenset({S.AWAITING_PAYMENT, S.AUTHORIZED, S.CONFIRMED})

#: Statuses a booking never leaves, except confirmed -> refunded which is a client action.
FINAL = frozenset({S.REJECTED, S.EXPIRED, S.CANCELLED, S.REFUNDED})

#: Statuses that clients poll: the worker has work left to do.
SETTLED = frozenset({S.AUTHORIZED, S.CONFIRMED, *FINAL})

#: Statuses the expiry sweep acts on once `expires_at` has passed.
EXPIRABLE = frozenset({S.AWAITING_PAYMENT, S.AUTHORIZED})


def check_transition(current: BookingStatus, target: BookingStatus) -> BookingStatus:
    """Return `target` if the lifecycle allows moving there from `current`."""
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidState(
            f"a booking cannot go from {current} to {target}",
            details={"status": str(current), "target": str(target)},
        )
    return target


def ensure_confirmable(status: BookingStatus, expires_at: datetime | None, now: datetime) -> None:
    """Capture is allowed for an authorized booking whose hold has not run out."""
    if status is not S.AUTHORIZED:
        raise InvalidState(
            f"only an authorized booking can be confirmed; this one is {status}",
            details={"status": str(status)},
        )
    if expires_at is not None and expires_at <= now:
        raise InvalidState("the hold on this booking has expired", details={"status": "expired"})


def ensure_cancellable(status: BookingStatus) -> None:
    if status in FINAL:
        raise InvalidState(
            f"the booking is already {status}", details={"status": str(status)}
        )


def ensure_payment_retryable(status: BookingStatus) -> None:
    if status is not S.AWAITING_PAYMENT:
        raise InvalidState(
            f"a payment can be retried only while awaiting payment; this booking is {status}",
            details={"status": str(status)},
        )


def is_expired(status: BookingStatus, expires_at: datetime | None, now: datetime) -> bool:
    return status in EXPIRABLE and expires_at is not None and expires_at <= now


@dataclass(frozen=True)
class RetryHold:
    """How long a booking awaiting payment keeps its inventory after a failed attempt."""

    #: Each failed attempt leaves the customer at least this long for the next one...
    window: timedelta
    #: ...but no hold lasts longer than this from the booking's creation, however many attempts fail.
    longest: timedelta

    def extended(self, expires_at: datetime | None, now: datetime, created_at: datetime) -> datetime:
        """The hold after a failed attempt at `now`: extended, capped, never shortened."""
        current = expires_at or now
        return max(current, min(now + self.window, created_at + self.longest))
