"""What a fact about a booking's payment does to the booking: the one rule.

A fact is what the provider says about the payment the booking recorded: the answer to a call a
worker made (an intent's state, a decline, a refund), or the provider's own record, read back
when a webhook told us to look. Whatever its source, `apply_fact` decides from the booking as it
stands now what the books say next, which transitions follow, and how long the hold lasts.

Its invariants (property-tested in tests/unit/test_payment_facts.py): the payment's status only
moves forward; captured and refunded amounts never drop; refunded never exceeds captured; money
taken after the client asked to cancel never confirms the booking; a fact whose amount or
currency is not the booking's changes nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from domain.lifecycle import FINAL, BookingStatus, RetryHold
from domain.payments import IntentState, PaymentStatus, later_status

S = BookingStatus
P = PaymentStatus

#: Statuses of a payment nobody has paid yet (nothing held, nothing taken).
UNPAID = frozenset({P.NONE, P.REQUIRES_ACTION, P.FAILED})

#: A booking whose inventory is held and whose payment is still open.
OPEN = frozenset({S.AWAITING_PAYMENT, S.AUTHORIZED})


@dataclass(frozen=True)
class Dispute:
    """A chargeback on the booking's charge, as the provider reports it."""

    id: str
    status: str
    amount: int
    reason: str | None = None

    @property
    def closed(self) -> bool:
        return self.status in CLOSED_DISPUTES


#: Where a dispute ends: the money stays with us (won, warning_closed) or goes back (lost).
CLOSED_DISPUTES = frozenset({"won", "lost", "warning_closed"})


@dataclass(frozen=True)
class Books:
    """Our record of one booking's payment."""

    status: PaymentStatus
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    decline_code: str | None = None
    dispute: Dispute | None = None


@dataclass(frozen=True)
class BookingFacts:
    """What the rule needs to know about the booking itself."""

    status: BookingStatus
    total_amount: int
    currency: str
    cancel_requested: bool = False
    #: 1 for the first payment attempt; a declined first attempt rejects the booking.
    attempt: int = 1
    expires_at: datetime | None = None
    created_at: datetime | None = None
    #: Why the cancel ends the booking: cancelled_by_client or cancelled_by_operator.
    cancel_reason: str = "cancelled_by_client"
    #: The refund total asked for: a cancel's (fixed when accepted) or operators' partial refunds.
    refund_requested: int = 0
    #: A confirm was accepted (or the request asked for an immediate capture): its capture
    #: confirms however late it lands.
    confirm_requested: bool = False


class FactKind(enum.StrEnum):
    #: The provider's record of the booking's intent (a call's answer, or read back).
    INTENT = "intent"
    #: The payment attempt a worker made was declined.
    DECLINED = "declined"
    #: The refund a worker asked for went through (a cancel's, or an operator's partial refund);
    #: `refunded` is the intent's total since.
    REFUNDED = "refunded"
    #: The booking's hosted checkout page expired unpaid, or was expired by us.
    CHECKOUT_CLOSED = "checkout_closed"
    #: The customer's bank disputes the charge (opened, updated, won or lost).
    DISPUTED = "disputed"


@dataclass(frozen=True)
class PaymentFact:
    kind: FactKind
    status: PaymentStatus = P.NONE
    #: The intent's amount and currency: they must be the booking's.
    amount: int | None = None
    currency: str | None = None
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    decline_code: str | None = None
    #: A decline because the provider does not know the payment method (not the card's answer).
    method_invalid: bool = False
    dispute: Dispute | None = None
    #: Read back by us after a webhook (not the answer to our own call): such a report never
    #: puts an unpaid payment back into the customer's hands while a new attempt is pending.
    reported: bool = False


@dataclass(frozen=True)
class Move:
    to: BookingStatus
    reason: str | None = None


@dataclass(frozen=True)
class Consequence:
    books: Books
    moves: tuple[Move, ...] = ()
    expires_at: datetime | None = None
    #: Why nothing changed, when nothing did.
    ignored: str | None = None
    #: The fact contradicts the booking (amount, currency): an operator must look.
    mismatch: bool = False

    @property
    def frees_inventory(self) -> bool:
        return any(move.to in FINAL for move in self.moves)

    def news(self, before: Books, *, action_required: bool) -> tuple[str, ...]:
        """What the client hears of besides the transitions (which tell it themselves): a payment
        attempt that failed without ending the booking, a payment the customer must act on (3-D
        Secure), a partial refund, a dispute opened or decided."""
        after, moved_to = self.books, {move.to for move in self.moves}
        news = []
        if after.status is P.FAILED and before.status is not P.FAILED and S.REJECTED not in moved_to:
            news.append("payment_failed")
        if action_required and after.status is P.REQUIRES_ACTION and before.status is not P.REQUIRES_ACTION:
            news.append("payment_action_required")
        if after.refunded > before.refunded and S.REFUNDED not in moved_to:
            news.append("refunded")
        if after.dispute is not None and after.dispute != before.dispute:
            news.append("disputed")
        return tuple(news)


def intent_fact(state: IntentState, *, reported: bool = False) -> PaymentFact:
    """The provider's record of an intent as a fact (`reported`: read back after a webhook)."""
    return PaymentFact(
        FactKind.INTENT, state.status, amount=state.amount, currency=state.currency,
        authorized=state.amount_authorized, captured=state.amount_captured,
        refunded=state.amount_refunded, decline_code=state.decline_code, reported=reported,
    )


def apply_fact(
    booking: BookingFacts, books: Books, fact: PaymentFact, *, now: datetime, retry_hold: RetryHold
) -> Consequence:
    """The books and transitions that follow from `fact`, given the booking as it stands."""
    if fact.amount is not None and (
        fact.amount != booking.total_amount or (fact.currency or "").lower() != booking.currency.lower()
    ):
        return Consequence(books, ignored=(
            f"the provider's payment is {fact.amount} {fact.currency}, the booking's "
            f"{booking.total_amount} {booking.currency}"
        ), mismatch=True)
    if fact.kind is FactKind.DECLINED:
        return _declined(booking, books, fact, now, retry_hold)
    if fact.kind is FactKind.CHECKOUT_CLOSED:
        return _checkout_closed(booking, books)
    if fact.kind is FactKind.REFUNDED:
        return _refunded(booking, books, fact)
    if fact.kind is FactKind.DISPUTED:
        return _disputed(books, fact)
    return _intent(booking, books, fact, now, retry_hold)


def _intent(
    booking: BookingFacts, books: Books, fact: PaymentFact, now: datetime, retry_hold: RetryHold
) -> Consequence:
    if fact.reported and books.status is P.NONE and fact.status in UNPAID:
        # A retry was accepted and not yet made: the old attempt's state is not news.
        return Consequence(books, ignored=f"a new payment attempt is pending; the intent is {fact.status}")
    money = _merged(books, fact)
    moves = _moves(booking, money, now)
    if money == books and not moves:
        return Consequence(books, ignored=f"already recorded: the payment is {books.status}")
    expires_at = booking.expires_at
    if money.status is P.FAILED and books.status is not P.FAILED and booking.status is S.AWAITING_PAYMENT:
        # The customer may try again (another card on the front end): keep the hold a while.
        expires_at = _extended(booking, now, retry_hold)
    return Consequence(money, moves, expires_at)


def _merged(books: Books, fact: PaymentFact) -> Books:
    captured = max(books.captured, fact.captured)
    refunded = min(captured, max(books.refunded, fact.refunded))
    reported = P.REFUNDED if refunded > 0 else fact.status
    status = later_status(books.status, reported)
    if captured > 0 and status not in (P.CAPTURED, P.REFUNDED):
        status = P.CAPTURED  # money taken stays taken: no report of a cancel can undo a capture
    decline_code = fact.decline_code if status is P.FAILED and fact.decline_code else books.decline_code
    return Books(status, max(books.authorized, fact.authorized), captured, refunded, decline_code)


def _moves(booking: BookingFacts, money: Books, now: datetime) -> tuple[Move, ...]:
    """The transitions the money implies for the booking (in order)."""
    status = booking.status
    if money.captured > 0 and status in OPEN:
        if booking.cancel_requested:
            # Money taken after the client asked to cancel: the cancel ends the booking and the
            # money goes back in full; it never confirms.
            return ()
        if not booking.confirm_requested and booking.expires_at is not None and booking.expires_at <= now:
            # Money taken after the hold lapsed, unasked (a dashboard capture): the seat has been
            # free since expires_at and may be another booking's. It expires; the money goes back.
            return (Move(S.EXPIRED, "hold_expired"),)
        moves = [Move(S.CONFIRMED)]
        status = S.CONFIRMED
    else:
        moves = []
    if status is S.CONFIRMED:
        ended = _refund_ends(booking, money, refunded_by="refunded_at_provider")
        if ended is not None:
            moves.append(ended)
    elif money.status is P.AUTHORIZED and status is S.AWAITING_PAYMENT:
        moves.append(Move(S.AUTHORIZED))
    elif money.status is P.CANCELED and money.captured == 0 and status in OPEN:
        # The authorization is gone at the provider (voided there, or lapsed): so is the hold.
        moves.append(Move(S.CANCELLED, "payment_canceled"))
    return tuple(moves)


def _refund_ends(booking: BookingFacts, money: Books, *, refunded_by: str) -> Move | None:
    """A confirmed booking ends refunded when a cancel's refund total is reached (for the cancel's
    reason), or when everything captured has gone back (for `refunded_by`)."""
    if booking.cancel_requested and money.refunded >= booking.refund_requested:
        return Move(S.REFUNDED, booking.cancel_reason)
    if money.refunded >= money.captured > 0:
        return Move(S.REFUNDED, refunded_by)
    return None


def _declined(
    booking: BookingFacts, books: Books, fact: PaymentFact, now: datetime, retry_hold: RetryHold
) -> Consequence:
    if later_status(books.status, P.FAILED) is not P.FAILED:
        # Overtaken: the customer paid on the same intent since, and a webhook said so first.
        return Consequence(books, ignored=f"a decline arrived after the payment was {books.status}")
    money = replace(books, status=P.FAILED, decline_code=(fact.decline_code or "card_declined")[:60])
    if booking.status is not S.AWAITING_PAYMENT:
        return Consequence(money)
    if booking.attempt == 1:
        # Declined at once: the booking is rejected and its inventory freed.
        reason = "payment_method_invalid" if fact.method_invalid else "payment_declined"
        return Consequence(money, (Move(S.REJECTED, reason),))
    # A declined retry keeps the hold a little longer for the next attempt.
    return Consequence(money, expires_at=_extended(booking, now, retry_hold))


def _refunded(booking: BookingFacts, books: Books, fact: PaymentFact) -> Consequence:
    refunded = min(books.captured, max(books.refunded, fact.refunded))
    money = replace(books, status=later_status(books.status, P.REFUNDED), refunded=refunded)
    if booking.status is not S.CONFIRMED:
        return Consequence(money)
    ended = _refund_ends(booking, money, refunded_by="refunded_by_operator")
    return Consequence(money, (ended,) if ended else ())  # a partial refund: it stays confirmed


def _checkout_closed(booking: BookingFacts, books: Books) -> Consequence:
    if books.status not in UNPAID:
        # A session closes unpaid only while nothing was paid on it; money paid is the intent's.
        return Consequence(books, ignored=f"the checkout closed after the payment was {books.status}")
    money = replace(books, status=P.CANCELED)
    if booking.status is S.AWAITING_PAYMENT:
        return Consequence(money, (Move(S.EXPIRED, "checkout_expired"),))
    return Consequence(money)


def _disputed(books: Books, fact: PaymentFact) -> Consequence:
    """A dispute is recorded beside the money, which it does not change: Stripe's captured and
    refunded amounts stay as they are when a dispute is lost (the money leaves by the dispute)."""
    dispute = fact.dispute
    assert dispute is not None
    if dispute.amount > books.captured:
        return Consequence(books, ignored=f"a dispute of {dispute.amount} exceeds what was captured", mismatch=True)
    if books.dispute is not None and books.dispute.id == dispute.id and books.dispute.closed and not dispute.closed:
        return Consequence(books, ignored=f"the dispute was already {books.dispute.status}")
    if books.dispute == dispute:
        return Consequence(books, ignored=f"the dispute is already recorded as {dispute.status}")
    return Consequence(replace(books, dispute=dispute))


def _extended(booking: BookingFacts, now: datetime, retry_hold: RetryHold) -> datetime:
    return retry_hold.extended(booking.expires_at, now, booking.created_at or now)
