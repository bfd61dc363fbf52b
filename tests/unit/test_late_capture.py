"""A capture that lands after a hold lapsed: found by the fault campaign (bench/chaos/lapses.py),
where a dashboard capture applied just before the re-booking's placement gave the lapsed booking
its seat back and the re-booking was refused."""

from __future__ import annotations

from datetime import timedelta

from domain.lifecycle import BookingStatus
from domain.payment_facts import Books, Move
from domain.payments import PaymentStatus
from tests.unit.test_payment_facts import NOW, TOTAL, apply, booking, intent

S = BookingStatus
P = PaymentStatus
LAPSED = NOW - timedelta(seconds=1)


def test_a_capture_after_the_hold_lapsed_expires_the_booking_and_keeps_the_money_to_refund():
    result = apply(booking(expires_at=LAPSED), Books(P.AUTHORIZED, TOTAL), intent(P.CAPTURED, captured=TOTAL))
    assert result.moves == (Move(S.EXPIRED, "hold_expired"),)
    assert result.books.captured == TOTAL  # recorded, so the expiry gives it back in full
    assert result.frees_inventory


def test_a_capture_after_an_accepted_confirm_still_confirms_however_late():
    result = apply(booking(expires_at=LAPSED, confirm_requested=True), Books(P.AUTHORIZED, TOTAL),
                   intent(P.CAPTURED, captured=TOTAL))
    assert result.moves == (Move(S.CONFIRMED),)


def test_a_capture_before_the_hold_lapses_confirms():
    result = apply(booking(expires_at=NOW + timedelta(seconds=1)), Books(P.AUTHORIZED, TOTAL),
                   intent(P.CAPTURED, captured=TOTAL))
    assert result.moves == (Move(S.CONFIRMED),)
