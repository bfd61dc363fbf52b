"""Cases of the payment-fact rule found in review (`domain.payment_facts`)."""

from __future__ import annotations

from domain.payment_facts import Books, Move
from tests.unit.test_payment_facts import TOTAL, P, S, apply, booking, intent


def test_the_cancels_own_refund_reported_first_ends_the_booking_for_the_cancels_reason():
    cancelled = booking(S.CONFIRMED, cancel_requested=True, cancel_reason="cancelled_by_operator")
    result = apply(cancelled, Books(P.CAPTURED, TOTAL, TOTAL), intent(P.CAPTURED, captured=TOTAL, refunded=TOTAL))
    assert result.moves == (Move(S.REFUNDED, "cancelled_by_operator"),)
