"""The one rule for what a fact about the payment does to a booking (`domain.payment_facts`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.lifecycle import ALLOWED_TRANSITIONS, FINAL, BookingStatus, RetryHold
from domain.payment_facts import (
    BookingFacts,
    Books,
    Consequence,
    Dispute,
    FactKind,
    Move,
    PaymentFact,
    apply_fact,
)
from domain.payments import PaymentStatus, later_status

S = BookingStatus
P = PaymentStatus
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
HOLD = RetryHold(window=timedelta(minutes=10), longest=timedelta(hours=1))
TOTAL = 12_000
PROPERTY = settings(max_examples=500, deadline=None, database=None)


def booking(status: S = S.AUTHORIZED, **changes) -> BookingFacts:  # type: ignore[no-untyped-def]
    values = {"total_amount": TOTAL, "currency": "eur", "expires_at": NOW + timedelta(minutes=5),
              "created_at": NOW - timedelta(minutes=10), **changes}
    return BookingFacts(status, **values)


def intent(status: P, *, captured: int = 0, refunded: int = 0, reported: bool = True, **changes) -> PaymentFact:  # type: ignore[no-untyped-def]
    values = {"amount": TOTAL, "currency": "eur", "reported": reported,
              "authorized": TOTAL if status in (P.AUTHORIZED, P.CAPTURED) else 0, **changes}
    return PaymentFact(FactKind.INTENT, status, captured=captured, refunded=refunded, **values)


def apply(facts: BookingFacts, books: Books, fact: PaymentFact) -> Consequence:
    return apply_fact(facts, books, fact, now=NOW, retry_hold=HOLD)


def test_an_authorization_moves_a_booking_awaiting_payment_to_authorized():
    result = apply(booking(S.AWAITING_PAYMENT), Books(P.REQUIRES_ACTION), intent(P.AUTHORIZED))
    assert result.moves == (Move(S.AUTHORIZED),)
    assert (result.books.status, result.books.authorized) == (P.AUTHORIZED, TOTAL)


def test_a_capture_confirms_an_open_booking():
    result = apply(booking(), Books(P.AUTHORIZED, TOTAL), intent(P.CAPTURED, captured=TOTAL))
    assert result.moves == (Move(S.CONFIRMED),)
    assert result.books == Books(P.CAPTURED, TOTAL, TOTAL, 0)


def test_money_captured_and_refunded_at_the_provider_before_we_knew_confirms_then_refunds():
    # The livelock of old: a refund reported before the capture was recorded.
    result = apply(booking(), Books(P.AUTHORIZED, TOTAL), intent(P.CAPTURED, captured=TOTAL, refunded=TOTAL))
    assert result.moves == (Move(S.CONFIRMED), Move(S.REFUNDED, "refunded_at_provider"))
    assert result.books == Books(P.REFUNDED, TOTAL, TOTAL, TOTAL)
    assert result.frees_inventory


def test_a_partial_refund_at_the_provider_keeps_the_booking_confirmed():
    result = apply(booking(S.CONFIRMED), Books(P.CAPTURED, TOTAL, TOTAL), intent(P.CAPTURED, captured=TOTAL, refunded=5000))
    assert result.moves == ()
    assert (result.books.status, result.books.refunded) == (P.REFUNDED, 5000)


def test_a_capture_after_the_client_asked_to_cancel_never_confirms():
    result = apply(booking(cancel_requested=True), Books(P.AUTHORIZED, TOTAL), intent(P.CAPTURED, captured=TOTAL))
    assert result.moves == ()
    assert result.books.captured == TOTAL  # recorded, so the cancel gives it back


def test_a_cancel_at_the_provider_cancels_an_open_booking_and_frees_its_inventory():
    result = apply(booking(), Books(P.AUTHORIZED, TOTAL), intent(P.CANCELED))
    assert result.moves == (Move(S.CANCELLED, "payment_canceled"),)
    assert result.frees_inventory


@pytest.mark.parametrize(("amount", "currency"), [(1, "eur"), (TOTAL, "jpy"), (TOTAL * 2, "eur")])
def test_a_payment_that_is_not_the_bookings_changes_nothing_and_is_a_mismatch(amount, currency):
    books = Books(P.REQUIRES_ACTION)
    result = apply(booking(S.AWAITING_PAYMENT), books, intent(P.CAPTURED, captured=amount, amount=amount, currency=currency))
    assert result.mismatch and result.ignored
    assert (result.books, result.moves) == (books, ())


def test_a_failed_attempt_by_the_customer_extends_the_hold_and_keeps_the_decline_code():
    facts = booking(S.AWAITING_PAYMENT)
    result = apply(facts, Books(P.REQUIRES_ACTION), intent(P.FAILED, decline_code="insufficient_funds"))
    assert (result.books.status, result.books.decline_code) == (P.FAILED, "insufficient_funds")
    assert result.expires_at == NOW + HOLD.window


def test_a_report_of_an_old_attempt_does_not_stop_a_retry_that_is_pending():
    for status in (P.FAILED, P.REQUIRES_ACTION):
        result = apply(booking(S.AWAITING_PAYMENT, attempt=2), Books(P.NONE), intent(status))
        assert result.ignored and result.books == Books(P.NONE)


def test_a_first_attempt_declined_rejects_the_booking_and_a_later_one_extends_the_hold():
    decline = PaymentFact(FactKind.DECLINED, decline_code="card_declined")
    first = apply(booking(S.AWAITING_PAYMENT), Books(P.NONE), decline)
    assert first.moves == (Move(S.REJECTED, "payment_declined"),)
    later = apply(booking(S.AWAITING_PAYMENT, attempt=2), Books(P.NONE), decline)
    assert later.moves == () and later.expires_at == NOW + HOLD.window


def test_a_decline_after_the_customer_paid_is_ignored():
    decline = PaymentFact(FactKind.DECLINED, decline_code="card_declined")
    result = apply(booking(), Books(P.AUTHORIZED, TOTAL), decline)
    assert result.ignored and result.books == Books(P.AUTHORIZED, TOTAL)


def test_our_refund_ends_a_confirmed_booking_whatever_the_policy_granted():
    result = apply(booking(S.CONFIRMED, cancel_requested=True), Books(P.CAPTURED, TOTAL, TOTAL),
                   PaymentFact(FactKind.REFUNDED, refunded=0))
    assert result.moves == (Move(S.REFUNDED, "cancelled_by_client"),)


def test_a_checkout_that_closed_unpaid_expires_the_booking_and_is_ignored_once_paid():
    closed = PaymentFact(FactKind.CHECKOUT_CLOSED)
    assert apply(booking(S.AWAITING_PAYMENT), Books(P.REQUIRES_ACTION), closed).moves == (
        Move(S.EXPIRED, "checkout_expired"),
    )
    assert apply(booking(), Books(P.AUTHORIZED, TOTAL), closed).ignored


def test_a_dispute_is_recorded_beside_the_money_and_a_closed_one_stays_closed():
    books = Books(P.CAPTURED, TOTAL, TOTAL)
    opened = apply(booking(S.CONFIRMED), books, PaymentFact(FactKind.DISPUTED, dispute=Dispute("dp_1", "needs_response", TOTAL)))
    assert opened.books == Books(P.CAPTURED, TOTAL, TOTAL, dispute=Dispute("dp_1", "needs_response", TOTAL))
    assert opened.moves == ()
    lost = apply(booking(S.CONFIRMED), opened.books, PaymentFact(FactKind.DISPUTED, dispute=Dispute("dp_1", "lost", TOTAL)))
    assert lost.books.dispute == Dispute("dp_1", "lost", TOTAL)
    assert (lost.books.captured, lost.books.refunded) == (TOTAL, 0)  # as Stripe's charge says
    stale = apply(booking(S.CONFIRMED), lost.books, PaymentFact(FactKind.DISPUTED, dispute=Dispute("dp_1", "under_review", TOTAL)))
    assert stale.ignored and stale.books == lost.books


def test_a_dispute_of_more_than_was_captured_is_a_mismatch():
    result = apply(booking(S.CONFIRMED), Books(P.CAPTURED, TOTAL, TOTAL),
                   PaymentFact(FactKind.DISPUTED, dispute=Dispute("dp_1", "needs_response", TOTAL * 2)))
    assert result.mismatch and result.books.dispute is None


books_strategy = st.builds(
    lambda status, authorized, captured, refunded: Books(
        status, max(authorized, captured), captured, min(refunded, captured)
    ),
    st.sampled_from(P), st.sampled_from([0, TOTAL]), st.sampled_from([0, TOTAL]),
    st.sampled_from([0, 5000, TOTAL]),
).filter(lambda books: books.captured == 0 or books.status in (P.CAPTURED, P.REFUNDED))
facts_strategy = st.one_of(
    st.builds(
        lambda status, captured, refunded, reported, amount: intent(
            status, captured=captured, refunded=min(refunded, captured), reported=reported, amount=amount,
        ),
        st.sampled_from([P.REQUIRES_ACTION, P.FAILED, P.AUTHORIZED, P.CAPTURED, P.CANCELED]),
        st.sampled_from([0, TOTAL]), st.sampled_from([0, 5000, TOTAL]), st.booleans(),
        st.sampled_from([TOTAL, TOTAL, 1]),
    ),
    st.builds(PaymentFact, st.just(FactKind.DECLINED), decline_code=st.just("card_declined")),
    st.builds(PaymentFact, st.just(FactKind.REFUNDED), refunded=st.sampled_from([0, 5000, TOTAL, TOTAL * 3])),
    st.just(PaymentFact(FactKind.CHECKOUT_CLOSED)),
    st.builds(
        lambda status, amount: PaymentFact(FactKind.DISPUTED, dispute=Dispute("dp_1", status, amount, "fraudulent")),
        st.sampled_from(["needs_response", "under_review", "won", "lost"]), st.sampled_from([5000, TOTAL]),
    ),
)
bookings_strategy = st.builds(
    booking, st.sampled_from([s for s in S if s is not S.REQUESTED]),
    cancel_requested=st.booleans(), attempt=st.sampled_from([1, 2]),
)


@PROPERTY
@given(bookings_strategy, books_strategy, facts_strategy)
def test_the_books_only_move_forward_and_never_claim_more_refunded_than_captured(facts, books, fact):
    result = apply(facts, books, fact)
    after = result.books
    assert later_status(books.status, after.status) is after.status or after.status is books.status
    assert after.authorized >= books.authorized
    assert after.captured >= books.captured
    assert after.refunded >= books.refunded
    assert after.refunded <= after.captured
    if after.captured > 0:
        assert after.status in (P.CAPTURED, P.REFUNDED)


@PROPERTY
@given(bookings_strategy, books_strategy, facts_strategy)
def test_every_move_is_one_the_lifecycle_allows_and_money_taken_after_a_cancel_never_confirms(facts, books, fact):
    result = apply(facts, books, fact)
    status = facts.status
    for move in result.moves:
        assert move.to in ALLOWED_TRANSITIONS[status]
        status = move.to
    if facts.cancel_requested and facts.status is not S.CONFIRMED:
        assert S.CONFIRMED not in [move.to for move in result.moves]
    if result.mismatch or result.ignored:
        assert result.moves == () and result.books == books
    if status in FINAL and status is not facts.status:
        assert result.frees_inventory


@PROPERTY
@given(bookings_strategy, books_strategy, facts_strategy)
def test_applying_the_same_fact_twice_changes_nothing_the_second_time(facts, books, fact):
    first = apply(facts, books, fact)
    status = first.moves[-1].to if first.moves else facts.status
    again_facts = BookingFacts(
        status, facts.total_amount, facts.currency, facts.cancel_requested, facts.attempt,
        first.expires_at or facts.expires_at, facts.created_at,
    )
    second = apply(again_facts, first.books, fact)
    if fact.kind is not FactKind.REFUNDED:  # our refund's answer ends a confirmed booking once
        assert second.moves == ()
    assert second.books == first.books


def test_what_the_client_hears_of_besides_transitions():
    decline = PaymentFact(FactKind.DECLINED, decline_code="card_declined")
    retried = apply(booking(S.AWAITING_PAYMENT, attempt=2), Books(P.NONE), decline)
    assert retried.news(Books(P.NONE), action_required=False) == ("payment_failed",)
    first = apply(booking(S.AWAITING_PAYMENT), Books(P.NONE), decline)
    assert first.news(Books(P.NONE), action_required=False) == ()  # booking.rejected says it

    challenge = apply(booking(S.AWAITING_PAYMENT), Books(P.NONE), intent(P.REQUIRES_ACTION, reported=False))
    assert challenge.news(Books(P.NONE), action_required=True) == ("payment_action_required",)
    assert challenge.news(Books(P.NONE), action_required=False) == ()  # a client-mode intent: no news

    captured = Books(P.CAPTURED, TOTAL, TOTAL)
    partial = apply(booking(S.CONFIRMED), captured, intent(P.CAPTURED, captured=TOTAL, refunded=500))
    assert partial.news(captured, action_required=False) == ("refunded",)
    full = apply(booking(S.CONFIRMED), captured, intent(P.CAPTURED, captured=TOTAL, refunded=TOTAL))
    assert full.news(captured, action_required=False) == ()  # the transition to refunded says it
    disputed = apply(booking(S.CONFIRMED), captured,
                     PaymentFact(FactKind.DISPUTED, dispute=Dispute("dp_1", "needs_response", TOTAL)))
    assert disputed.news(captured, action_required=False) == ("disputed",)
