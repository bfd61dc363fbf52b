"""Idempotency keys for provider calls: the same for a retried step, different otherwise."""

from __future__ import annotations

from domain.payments import LIVE_AUTHORIZATION, PaymentStatus, PaymentStep, idempotency_key


def test_a_retried_step_reuses_its_idempotency_key():
    assert idempotency_key("b1", PaymentStep.CAPTURE) == idempotency_key(
        "b1", PaymentStep.CAPTURE, 1
    )


def test_each_step_booking_and_attempt_has_its_own_idempotency_key():
    keys = {
        idempotency_key(booking, step, attempt)
        for booking in ("b1", "b2")
        for step in PaymentStep
        for attempt in (1, 2)
    }
    assert len(keys) == 2 * len(PaymentStep) * 2


def test_the_idempotency_key_names_the_booking_step_and_attempt():
    assert idempotency_key("b1", PaymentStep.AUTHORIZE, 2) == "booking-b1-authorize-2"


def test_only_an_authorization_holds_the_customers_money():
    assert LIVE_AUTHORIZATION == {PaymentStatus.AUTHORIZED}
