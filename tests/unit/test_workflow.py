"""`next_step`: the one thing a booking needs next, for each situation a booking can be in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.lifecycle import FINAL, BookingStatus, check_transition
from domain.payments import CaptureMode, PaymentMode, PaymentStatus, PaymentStep
from domain.workflow import (
    PROVIDER_STEPS,
    VOIDABLE,
    BookingSnapshot,
    Step,
    lease_remaining,
    next_step,
)

S = BookingStatus
P = PaymentStatus
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=15)
EARLIER = NOW - timedelta(minutes=1)
PROPERTY = settings(max_examples=300, deadline=None, database=None)


def booking(**changes: object) -> BookingSnapshot:
    """A card booking awaiting payment, hold running, nothing asked of the provider yet."""
    base = BookingSnapshot(
        status=S.AWAITING_PAYMENT,
        payment_mode=PaymentMode.CARD,
        capture_mode=CaptureMode.ON_CONFIRM,
        has_payment_method=True,
        payment_status=PaymentStatus.NONE,
        pending_step=None,
        expires_at=LATER,
        confirm_requested=False,
        cancel_requested=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def authorized(**changes: object) -> BookingSnapshot:
    held = booking(status=S.AUTHORIZED, payment_status=PaymentStatus.AUTHORIZED)
    return replace(held, **changes)  # type: ignore[arg-type]


def test_a_new_request_is_held_first():
    assert next_step(booking(status=S.REQUESTED, expires_at=None), NOW) is Step.HOLD


def test_a_request_cancelled_before_it_was_processed_is_cancelled_without_holding():
    snapshot = booking(status=S.REQUESTED, expires_at=None, cancel_requested=True)
    assert next_step(snapshot, NOW) is Step.CANCEL


@pytest.mark.parametrize("pending", list(PaymentStep), ids=str)
@pytest.mark.parametrize(
    "snapshot",
    [
        booking(cancel_requested=True),
        booking(expires_at=EARLIER),
        authorized(confirm_requested=True),
        booking(status=S.CANCELLED, payment_status=PaymentStatus.AUTHORIZED),
        booking(status=S.CONFIRMED, payment_status=PaymentStatus.CAPTURED, cancel_requested=True),
        booking(status=S.REFUNDED, payment_status=PaymentStatus.REFUNDED),
    ],
    ids=[
        "cancel-requested",
        "expired",
        "confirm-requested",
        "final-live-auth",
        "refund-due",
        "done",
    ],
)
def test_an_unrecorded_provider_call_is_finished_before_anything_else(snapshot, pending):
    step = next_step(replace(snapshot, pending_step=pending), NOW)
    assert step is Step(pending.value)
    assert step in PROVIDER_STEPS


def test_every_payment_step_is_a_provider_step():
    assert {Step(p.value) for p in PaymentStep} == PROVIDER_STEPS
    assert PROVIDER_STEPS == {Step.AUTHORIZE, Step.CAPTURE, Step.VOID, Step.REFUND}


def test_a_card_booking_awaiting_payment_is_authorized():
    assert next_step(booking(), NOW) is Step.AUTHORIZE


def test_a_card_booking_with_immediate_capture_is_authorized_first():
    assert next_step(booking(capture_mode=CaptureMode.IMMEDIATE), NOW) is Step.AUTHORIZE


@pytest.mark.parametrize(
    "payment_status", [s for s in PaymentStatus if s is not PaymentStatus.NONE], ids=str
)
def test_a_card_is_authorized_only_when_nothing_was_asked_of_the_provider_yet(payment_status):
    assert next_step(booking(payment_status=payment_status), NOW) is None


def test_a_card_booking_without_a_payment_method_waits_for_the_client():
    assert next_step(booking(has_payment_method=False), NOW) is None


@pytest.mark.parametrize("mode", [PaymentMode.CLIENT, PaymentMode.CHECKOUT], ids=str)
def test_a_client_or_checkout_payment_is_started_by_the_worker_without_a_payment_method(mode):
    assert next_step(booking(payment_mode=mode, has_payment_method=False), NOW) is Step.AUTHORIZE


@pytest.mark.parametrize("mode", [PaymentMode.CLIENT, PaymentMode.CHECKOUT], ids=str)
@pytest.mark.parametrize("payment_status", [P.REQUIRES_ACTION, P.FAILED, P.AUTHORIZED], ids=str)
def test_a_started_client_or_checkout_payment_waits_for_the_customer(mode, payment_status):
    assert next_step(booking(payment_mode=mode, payment_status=payment_status), NOW) is None


def test_cancel_of_a_booking_awaiting_payment_releases_it():
    assert next_step(booking(cancel_requested=True), NOW) is Step.CANCEL


def test_cancel_of_an_authorized_booking_releases_it_before_any_capture():
    snapshot = authorized(cancel_requested=True, confirm_requested=True)
    assert next_step(snapshot, NOW) is Step.CANCEL


def test_cancel_wins_over_an_expiry_that_is_already_due():
    assert next_step(booking(cancel_requested=True, expires_at=EARLIER), NOW) is Step.CANCEL


def test_an_authorized_booking_with_an_accepted_confirm_is_captured():
    assert next_step(authorized(confirm_requested=True), NOW) is Step.CAPTURE


def test_an_accepted_confirm_is_captured_even_after_the_hold_runs_out():
    assert next_step(authorized(confirm_requested=True, expires_at=EARLIER), NOW) is Step.CAPTURE


def test_an_authorized_booking_without_confirm_waits_for_the_client():
    assert next_step(authorized(), NOW) is None


def test_an_authorized_booking_asking_for_immediate_capture_is_captured():
    assert next_step(authorized(capture_mode=CaptureMode.IMMEDIATE), NOW) is Step.CAPTURE


def test_an_immediate_capture_is_not_made_once_the_hold_has_run_out():
    snapshot = authorized(capture_mode=CaptureMode.IMMEDIATE, expires_at=EARLIER)
    assert next_step(snapshot, NOW) is Step.EXPIRE


@pytest.mark.parametrize("status", [S.AWAITING_PAYMENT, S.AUTHORIZED], ids=str)
def test_a_hold_expires_at_the_exact_moment_it_ends(status):
    snapshot = booking(status=status, expires_at=NOW)
    assert next_step(snapshot, NOW) is Step.EXPIRE
    assert next_step(snapshot, NOW - timedelta(microseconds=1)) is not Step.EXPIRE


def test_an_expired_hold_is_expired_rather_than_authorized():
    assert next_step(booking(expires_at=EARLIER), NOW) is Step.EXPIRE


def test_a_booking_without_an_expiry_never_expires():
    assert next_step(authorized(expires_at=None), NOW + timedelta(days=365)) is None


def test_voidable_payments_are_a_held_authorization_or_one_the_customer_could_still_complete():
    assert VOIDABLE == {P.AUTHORIZED, P.REQUIRES_ACTION}


@pytest.mark.parametrize("status", sorted(FINAL), ids=str)
@pytest.mark.parametrize("payment_status", sorted(VOIDABLE), ids=str)
def test_a_final_booking_with_a_voidable_payment_has_it_voided(status, payment_status):
    snapshot = booking(status=status, payment_status=payment_status, cancel_requested=True)
    assert next_step(snapshot, NOW) is Step.VOID


@pytest.mark.parametrize("status", sorted(FINAL), ids=str)
@pytest.mark.parametrize("payment_status", sorted(set(P) - VOIDABLE), ids=str)
def test_a_final_booking_with_no_voidable_payment_and_no_money_kept_needs_nothing(
    status, payment_status
):
    snapshot = booking(status=status, payment_status=payment_status, expires_at=EARLIER)
    assert next_step(replace(snapshot, cancel_requested=True, confirm_requested=True), NOW) is None
    assert next_step(snapshot, NOW) is None
    settled = replace(snapshot, amount_captured=5_000, amount_refunded=5_000)
    assert next_step(settled, NOW) is None


@pytest.mark.parametrize("status", [S.REJECTED, S.EXPIRED, S.CANCELLED], ids=str)
@pytest.mark.parametrize("payment_status", [P.CAPTURED, P.REFUNDED], ids=str)
def test_money_kept_for_a_booking_that_ended_undelivered_is_refunded(status, payment_status):
    snapshot = booking(status=status, payment_status=payment_status, amount_captured=5_000)
    assert next_step(snapshot, NOW) is Step.REFUND
    assert next_step(replace(snapshot, amount_refunded=4_999), NOW) is Step.REFUND
    assert next_step(replace(snapshot, amount_refunded=5_000), NOW) is None


def test_a_partial_refund_by_policy_is_not_topped_up_later():
    snapshot = booking(
        status=S.REFUNDED, payment_status=P.REFUNDED, amount_captured=5_000, amount_refunded=2_500
    )
    assert next_step(snapshot, NOW) is None


def test_a_voidable_payment_is_voided_before_any_refund():
    snapshot = booking(status=S.EXPIRED, payment_status=P.AUTHORIZED, amount_captured=5_000)
    assert next_step(snapshot, NOW) is Step.VOID


def test_a_confirmed_booking_cancelled_by_the_client_is_refunded():
    snapshot = booking(
        status=S.CONFIRMED, payment_status=PaymentStatus.CAPTURED, cancel_requested=True
    )
    assert next_step(snapshot, NOW) is Step.REFUND


def test_a_confirmed_booking_needs_nothing_more_even_after_its_hold_time():
    snapshot = booking(
        status=S.CONFIRMED, payment_status=PaymentStatus.CAPTURED, expires_at=EARLIER
    )
    assert next_step(snapshot, NOW) is None


def test_a_claim_without_a_start_time_has_no_lease_left():
    assert lease_remaining(None, timedelta(minutes=2), NOW) == timedelta(0)


def test_a_fresh_claim_has_the_rest_of_its_lease_left():
    started = NOW - timedelta(seconds=30)
    assert lease_remaining(started, timedelta(minutes=2), NOW) == timedelta(seconds=90)


def test_a_claim_lapses_exactly_when_its_lease_ends():
    started = NOW - timedelta(minutes=2)
    assert lease_remaining(started, timedelta(minutes=2), NOW) == timedelta(0)
    assert lease_remaining(started, timedelta(minutes=2), NOW - timedelta(seconds=1)) == timedelta(
        seconds=1
    )


def test_a_long_lapsed_claim_has_zero_not_negative_lease_left():
    assert lease_remaining(NOW - timedelta(hours=1), timedelta(minutes=2), NOW) == timedelta(0)


snapshots = st.builds(
    BookingSnapshot,
    status=st.sampled_from(S),
    payment_mode=st.sampled_from(PaymentMode),
    capture_mode=st.sampled_from(CaptureMode),
    has_payment_method=st.booleans(),
    payment_status=st.sampled_from(PaymentStatus),
    pending_step=st.none() | st.sampled_from(PaymentStep),
    expires_at=st.none() | st.sampled_from([EARLIER, NOW, LATER]),
    confirm_requested=st.booleans(),
    cancel_requested=st.booleans(),
    amount_captured=st.sampled_from([0, 5_000]),
    amount_refunded=st.sampled_from([0, 2_500, 5_000]),
    refund_requested=st.sampled_from([0, 2_500, 5_000]),
    dispute_status=st.none() | st.sampled_from(["needs_response", "under_review", "won", "lost", "warning_closed"]),
)

#: The status each local step moves a booking to (a hold may also reject the request).
LOCAL_TARGETS = {
    Step.HOLD: [S.AWAITING_PAYMENT, S.REJECTED],
    Step.CANCEL: [S.CANCELLED],
    Step.EXPIRE: [S.EXPIRED],
    Step.SETTLE_CHARGEBACK: [S.REFUNDED],
}


@PROPERTY
@given(snapshots)
def test_every_local_step_chosen_is_a_transition_the_lifecycle_allows(snapshot):
    step = next_step(snapshot, NOW)
    for target in LOCAL_TARGETS.get(step, []):  # type: ignore[call-overload]
        check_transition(snapshot.status, target)


@PROPERTY
@given(snapshots)
def test_a_final_booking_only_ever_releases_or_returns_money(snapshot):
    step = next_step(snapshot, NOW)
    if snapshot.status in FINAL:
        assert step is None or step in PROVIDER_STEPS
        if snapshot.pending_step is None:
            assert step in (None, Step.VOID, Step.REFUND)


@PROPERTY
@given(snapshots)
def test_money_is_only_asked_for_while_the_booking_is_still_open(snapshot):
    step = next_step(replace(snapshot, pending_step=None), NOW)
    if step is Step.AUTHORIZE:
        assert snapshot.status is S.AWAITING_PAYMENT and not snapshot.cancel_requested
        assert snapshot.payment_status is P.NONE
    if step is Step.CAPTURE:
        assert snapshot.status is S.AUTHORIZED and not snapshot.cancel_requested
    if step is Step.VOID:
        assert snapshot.status in FINAL and snapshot.payment_status in VOIDABLE
    if step is Step.REFUND:
        by_policy = snapshot.status is S.CONFIRMED and snapshot.cancel_requested
        by_operator = snapshot.status is S.CONFIRMED and snapshot.refund_requested > snapshot.amount_refunded
        undelivered = snapshot.status in FINAL - {S.REFUNDED}
        assert by_policy or by_operator or (undelivered and snapshot.amount_captured > snapshot.amount_refunded)


@PROPERTY
@given(snapshots)
def test_no_refund_is_asked_of_stripe_while_a_dispute_holds_the_money(snapshot):
    # Stripe refuses them (charge_disputed): asking again would be a retry without end.
    step = next_step(replace(snapshot, pending_step=None), NOW)
    if step is Step.REFUND and snapshot.dispute_status not in (None, "won", "warning_closed"):
        assert snapshot.status is S.CONFIRMED and snapshot.refund_requested <= snapshot.amount_refunded


def _confirmed_refund_due(**changes: object) -> BookingSnapshot:
    snapshot = booking(status=S.CONFIRMED, payment_status=P.CAPTURED, amount_captured=5_000, refund_requested=5_000)
    return replace(snapshot, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("dispute", ["needs_response", "under_review", "warning_needs_response"])
def test_a_refund_waits_while_a_dispute_is_open(dispute):
    assert next_step(_confirmed_refund_due(dispute_status=dispute), NOW) is None
    assert next_step(_confirmed_refund_due(dispute_status=dispute, cancel_requested=True), NOW) is None


def test_a_won_dispute_lets_the_refund_go_ahead():
    assert next_step(_confirmed_refund_due(dispute_status="won", cancel_requested=True), NOW) is Step.REFUND


def test_a_lost_dispute_settles_a_cancel_and_drops_a_partial_refund():
    # The chargeback gave the money back: that is the cancel's refund; a partial one has no money left.
    assert next_step(_confirmed_refund_due(dispute_status="lost", cancel_requested=True), NOW) is Step.SETTLE_CHARGEBACK
    assert next_step(_confirmed_refund_due(dispute_status="lost"), NOW) is None


def test_a_cancel_with_nothing_to_refund_ends_whatever_the_dispute():
    nothing_due = _confirmed_refund_due(dispute_status="needs_response", cancel_requested=True, refund_requested=0)
    assert next_step(nothing_due, NOW) is Step.REFUND  # of nothing: no call, and the booking ends


@pytest.mark.parametrize("status", [S.EXPIRED, S.CANCELLED, S.REJECTED], ids=str)
def test_a_declined_intent_left_open_is_closed_when_the_booking_ends(status):
    declined = booking(status=status, payment_status=PaymentStatus.FAILED, has_provider_payment=True)
    assert next_step(declined, NOW) is Step.VOID


@pytest.mark.parametrize("status", [S.EXPIRED, S.CANCELLED], ids=str)
def test_an_intent_whose_retry_was_accepted_but_not_made_is_closed_when_the_booking_ends(status):
    # POST /payment reset the payment to none; the booking ended before the new attempt ran, and
    # the old intent (a client secret the front end still holds) is open.
    reset = booking(status=status, payment_status=PaymentStatus.NONE, has_provider_payment=True)
    assert next_step(reset, NOW) is Step.VOID
    assert next_step(booking(status=status, payment_status=PaymentStatus.NONE), NOW) is None


def test_a_decline_with_nothing_at_the_provider_needs_no_void():
    declined = booking(status=S.REJECTED, payment_status=PaymentStatus.FAILED, has_provider_payment=False)
    assert next_step(declined, NOW) is None
