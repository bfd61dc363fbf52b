"""Cases of the payment-fact rule found in review (`domain.payment_facts`)."""

from __future__ import annotations

import pytest

from domain.payment_facts import Books, Move
from tests.unit.test_payment_facts import TOTAL, P, S, apply, booking, intent


@pytest.mark.xfail(strict=True, reason=(
    "_moves labels any full refund it sees on a confirmed booking refunded_at_provider, even the refund a "
    "client's or operator's cancel asked for, when Stripe's charge.refunded is applied before the worker's answer"
))
def test_the_cancels_own_refund_reported_first_ends_the_booking_for_the_cancels_reason():
    cancelled = booking(S.CONFIRMED, cancel_requested=True, cancel_reason="cancelled_by_operator")
    result = apply(cancelled, Books(P.CAPTURED, TOTAL, TOTAL), intent(P.CAPTURED, captured=TOTAL, refunded=TOTAL))
    assert result.moves == (Move(S.REFUNDED, "cancelled_by_operator"),)
