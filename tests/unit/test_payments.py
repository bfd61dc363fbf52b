"""Idempotency keys for provider calls: the same for a retried step, different otherwise."""

from __future__ import annotations

from domain.payments import (
    LIVE_AUTHORIZATION,
    PaymentStatus,
    PaymentStep,
    idempotency_key,
    later_status,
)


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


def test_an_answer_about_an_earlier_moment_does_not_move_the_money_back():
    P = PaymentStatus
    # A worker's decline or "awaiting the customer", recorded after a webhook said the same intent
    # was authorized or captured since.
    assert later_status(P.AUTHORIZED, P.FAILED) is P.AUTHORIZED
    assert later_status(P.CAPTURED, P.REQUIRES_ACTION) is P.CAPTURED
    assert later_status(P.CAPTURED, P.AUTHORIZED) is P.CAPTURED
    assert later_status(P.REFUNDED, P.CAPTURED) is P.REFUNDED
    assert later_status(P.CANCELED, P.AUTHORIZED) is P.CANCELED


def test_news_moves_the_money_forward():
    P = PaymentStatus
    assert later_status(P.NONE, P.FAILED) is P.FAILED
    assert later_status(P.FAILED, P.AUTHORIZED) is P.AUTHORIZED
    assert later_status(P.REQUIRES_ACTION, P.FAILED) is P.FAILED  # same stage: the latest word
    assert later_status(P.FAILED, P.REQUIRES_ACTION) is P.REQUIRES_ACTION
    assert later_status(P.AUTHORIZED, P.CAPTURED) is P.CAPTURED
    assert later_status(P.AUTHORIZED, P.CANCELED) is P.CANCELED
