"""What a provider event means for a booking, given where its payment stands."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.lifecycle import BookingStatus
from domain.payments import PaymentStatus
from domain.webhooks import HANDLED_TYPES, EffectKind, ProviderEvent, effect_of

S = BookingStatus
P = PaymentStatus
E = EffectKind
PROPERTY = settings(max_examples=300, deadline=None, database=None)
UNPAID = [P.NONE, P.REQUIRES_ACTION, P.FAILED]
PAID = [P.CAPTURED, P.REFUNDED]


def effect(
    kind: str,
    payment: PaymentStatus,
    booking: BookingStatus = S.AWAITING_PAYMENT,
    refunded: int = 0,
    **facts,
):
    return effect_of(ProviderEvent(kind, intent_id="pi_1", **facts), payment, booking, refunded)


def test_an_event_type_the_service_does_not_act_on_is_ignored_with_a_reason():
    result = effect("customer.created", P.NONE)
    assert result.kind is E.IGNORED
    assert "customer.created" in (result.reason or "")


@pytest.mark.parametrize("payment", UNPAID, ids=str)
def test_money_held_for_an_unpaid_payment_authorizes_it(payment):
    result = effect("payment_intent.amount_capturable_updated", payment, amount=4200)
    assert (result.kind, result.amount) == (E.AUTHORIZED, 4200)


@pytest.mark.parametrize("payment", [P.AUTHORIZED, P.CAPTURED, P.CANCELED, P.REFUNDED], ids=str)
def test_money_held_is_ignored_once_the_payment_has_moved_on(payment):
    result = effect("payment_intent.amount_capturable_updated", payment, amount=4200)
    assert result.kind is E.IGNORED and result.reason


@pytest.mark.parametrize("payment", [*UNPAID, P.AUTHORIZED, P.CANCELED], ids=str)
def test_a_payment_that_succeeded_is_captured_whatever_was_recorded_before(payment):
    result = effect("payment_intent.succeeded", payment, S.EXPIRED, amount=4200)
    assert (result.kind, result.amount) == (E.CAPTURED, 4200)


@pytest.mark.parametrize("payment", PAID, ids=str)
def test_a_repeated_success_is_ignored(payment):
    assert effect("payment_intent.succeeded", payment, S.CONFIRMED, amount=4200).kind is E.IGNORED


def test_a_checkout_completed_without_payment_authorizes_and_with_payment_captures():
    unpaid = effect("checkout.session.completed", P.REQUIRES_ACTION, amount=4200, paid=False)
    paid = effect("checkout.session.completed", P.REQUIRES_ACTION, amount=4200, paid=True)
    assert (unpaid.kind, paid.kind) == (E.AUTHORIZED, E.CAPTURED)
    assert effect("checkout.session.completed", P.CAPTURED, paid=True).kind is E.IGNORED


def test_a_failed_payment_of_a_booking_awaiting_payment_records_the_decline_code():
    result = effect(
        "payment_intent.payment_failed", P.REQUIRES_ACTION, failure_code="insufficient_funds"
    )
    assert (result.kind, result.reason) == (E.FAILED, "insufficient_funds")
    assert effect("payment_intent.payment_failed", P.REQUIRES_ACTION).reason == "card_declined"


@pytest.mark.parametrize(
    ("payment", "booking"),
    [
        (P.AUTHORIZED, S.AUTHORIZED),
        (P.CAPTURED, S.CONFIRMED),
        (P.FAILED, S.AWAITING_PAYMENT),
        (P.REQUIRES_ACTION, S.EXPIRED),
        (P.REQUIRES_ACTION, S.CANCELLED),
    ],
    ids=str,
)
def test_a_failure_that_comes_too_late_is_ignored(payment, booking):
    assert effect("payment_intent.payment_failed", payment, booking).kind is E.IGNORED


def test_a_stale_failure_arriving_after_a_payment_retry_is_ignored():
    assert effect("payment_intent.payment_failed", P.NONE).kind is E.IGNORED


@pytest.mark.parametrize("payment", [*UNPAID, P.AUTHORIZED], ids=str)
def test_a_cancel_at_the_provider_cancels_a_payment_that_took_no_money(payment):
    assert effect("payment_intent.canceled", payment, S.AUTHORIZED).kind is E.CANCELED


@pytest.mark.parametrize("payment", [*PAID, P.CANCELED], ids=str)
def test_a_cancel_after_the_money_was_taken_or_released_is_ignored(payment):
    assert effect("payment_intent.canceled", payment, S.CONFIRMED).kind is E.IGNORED


def test_a_refund_is_applied_only_when_it_adds_to_what_is_recorded():
    assert (
        effect("charge.refunded", P.CAPTURED, S.CONFIRMED, refunded=0, amount=2500).kind
        is E.REFUNDED
    )
    assert (
        effect("charge.refunded", P.REFUNDED, S.CONFIRMED, refunded=2500, amount=2500).kind
        is E.IGNORED
    )
    assert (
        effect("charge.refunded", P.REFUNDED, S.CONFIRMED, refunded=2500, amount=1000).kind
        is E.IGNORED
    )
    more = effect("charge.refunded", P.REFUNDED, S.REFUNDED, refunded=2500, amount=5000)
    assert (more.kind, more.amount) == (E.REFUNDED, 5000)


@pytest.mark.parametrize("payment", UNPAID, ids=str)
def test_an_expired_checkout_expires_a_booking_still_awaiting_payment(payment):
    assert effect("checkout.session.expired", payment).kind is E.CHECKOUT_EXPIRED


@pytest.mark.parametrize(
    ("payment", "booking"),
    [(P.AUTHORIZED, S.AUTHORIZED), (P.CAPTURED, S.CONFIRMED), (P.REQUIRES_ACTION, S.CANCELLED)],
    ids=str,
)
def test_an_expired_checkout_is_ignored_once_paid_for_or_ended(payment, booking):
    assert effect("checkout.session.expired", payment, booking).kind is E.IGNORED


events = st.builds(
    ProviderEvent,
    type=st.sampled_from(sorted(HANDLED_TYPES) + ["invoice.paid"]),
    intent_id=st.just("pi_1"),
    amount=st.integers(min_value=0, max_value=10_000),
    failure_code=st.none() | st.just("expired_card"),
    paid=st.booleans(),
)


@PROPERTY
@given(events, st.sampled_from(P), st.sampled_from(S), st.integers(min_value=0, max_value=10_000))
def test_an_event_never_moves_a_paid_payment_backwards(event, payment, booking, refunded):
    result = effect_of(event, payment, booking, refunded)
    if result.kind is E.IGNORED:
        assert result.reason
    if payment in PAID:
        assert result.kind in (E.IGNORED, E.REFUNDED)
    if result.kind is E.REFUNDED:
        assert event.amount > refunded
