"""The booking state machine: its transitions, and the guards on client actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidState
from domain.lifecycle import (
    ALLOWED_TRANSITIONS,
    EXPIRABLE,
    FINAL,
    HOLDS_INVENTORY,
    BookingStatus,
    RetryHold,
    check_transition,
    ensure_cancellable,
    ensure_confirmable,
    ensure_payment_retryable,
    is_expired,
)

S = BookingStatus
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
PROPERTY = settings(max_examples=200, deadline=None, database=None)

# Written out from the documented lifecycle rather than read from the module, so a change to the table shows up here.
EXPECTED_TRANSITIONS = {
    S.REQUESTED: {S.AWAITING_PAYMENT, S.REJECTED, S.CANCELLED},
    # confirmed at once: an immediate capture; rejected: the first payment attempt was declined
    S.AWAITING_PAYMENT: {S.AUTHORIZED, S.CONFIRMED, S.REJECTED, S.EXPIRED, S.CANCELLED},
    S.AUTHORIZED: {S.CONFIRMED, S.EXPIRED, S.CANCELLED},
    S.CONFIRMED: {S.REFUNDED},
    S.REJECTED: set(),
    S.EXPIRED: set(),
    S.CANCELLED: set(),
    S.REFUNDED: set(),
}
ALLOWED_PAIRS = [(a, b) for a in S for b in S if b in EXPECTED_TRANSITIONS[a]]
FORBIDDEN_PAIRS = [(a, b) for a in S for b in S if b not in EXPECTED_TRANSITIONS[a]]


def test_every_status_has_a_row_in_the_transition_table():
    assert set(ALLOWED_TRANSITIONS) == set(S)


@pytest.mark.parametrize(("current", "target"), ALLOWED_PAIRS, ids=lambda s: str(s))
def test_allowed_transition_returns_its_target(current, target):
    assert check_transition(current, target) is target


@pytest.mark.parametrize(("current", "target"), FORBIDDEN_PAIRS, ids=lambda s: str(s))
def test_forbidden_transition_raises_invalid_state_naming_both_statuses(current, target):
    with pytest.raises(InvalidState) as raised:
        check_transition(current, target)
    assert raised.value.details == {"status": str(current), "target": str(target)}
    assert raised.value.code == "invalid_state"


def test_no_status_transitions_to_itself():
    assert all(status not in ALLOWED_TRANSITIONS[status] for status in S)


def test_final_statuses_are_rejected_expired_cancelled_and_refunded():
    assert FINAL == {S.REJECTED, S.EXPIRED, S.CANCELLED, S.REFUNDED}


def test_final_statuses_have_no_way_out():
    assert all(ALLOWED_TRANSITIONS[status] == frozenset() for status in FINAL)


def test_inventory_is_held_while_awaiting_payment_authorized_or_confirmed():
    assert HOLDS_INVENTORY == {S.AWAITING_PAYMENT, S.AUTHORIZED, S.CONFIRMED}


def test_no_final_status_holds_inventory():
    assert not HOLDS_INVENTORY & FINAL


def test_only_awaiting_payment_and_authorized_bookings_can_expire():
    assert EXPIRABLE == {S.AWAITING_PAYMENT, S.AUTHORIZED}
    assert all(S.EXPIRED in ALLOWED_TRANSITIONS[status] for status in EXPIRABLE)


def test_every_status_that_holds_inventory_can_be_left_towards_a_final_status():
    for status in HOLDS_INVENTORY:
        assert ALLOWED_TRANSITIONS[status] & FINAL


@PROPERTY
@given(st.lists(st.integers(min_value=0, max_value=100), max_size=12))
def test_a_walk_of_allowed_transitions_never_leaves_a_final_status(choices):
    status = S.REQUESTED
    visited = [status]
    for choice in choices:
        options = sorted(ALLOWED_TRANSITIONS[status])
        if not options:
            break
        status = check_transition(status, options[choice % len(options)])
        visited.append(status)
    for earlier, later in pairwise(visited):
        assert earlier not in FINAL, f"left final status {earlier} for {later}"
    # the only way into refunded is from confirmed, the one client action after a settled payment
    if S.REFUNDED in visited:
        assert visited[visited.index(S.REFUNDED) - 1] is S.CONFIRMED
    # requested -> awaiting_payment -> authorized -> confirmed -> refunded is the longest life
    assert len(visited) <= 5


def test_authorized_booking_whose_hold_has_not_run_out_is_confirmable():
    ensure_confirmable(S.AUTHORIZED, NOW + timedelta(seconds=1), NOW)


def test_authorized_booking_without_an_expiry_is_confirmable():
    ensure_confirmable(S.AUTHORIZED, None, NOW)


@pytest.mark.parametrize(
    "expires_at", [NOW, NOW - timedelta(microseconds=1), NOW - timedelta(days=1)]
)
def test_authorized_booking_whose_hold_has_run_out_cannot_be_confirmed(expires_at):
    with pytest.raises(InvalidState) as raised:
        ensure_confirmable(S.AUTHORIZED, expires_at, NOW)
    assert raised.value.details == {"status": "expired"}


@pytest.mark.parametrize("status", [s for s in S if s is not S.AUTHORIZED], ids=str)
def test_only_an_authorized_booking_can_be_confirmed(status):
    with pytest.raises(InvalidState) as raised:
        ensure_confirmable(status, NOW + timedelta(hours=1), NOW)
    assert raised.value.details == {"status": str(status)}


@pytest.mark.parametrize("status", sorted(set(S) - FINAL), ids=str)
def test_a_booking_that_is_not_final_can_be_cancelled(status):
    ensure_cancellable(status)


@pytest.mark.parametrize("status", sorted(FINAL), ids=str)
def test_a_final_booking_cannot_be_cancelled_again(status):
    with pytest.raises(InvalidState) as raised:
        ensure_cancellable(status)
    assert raised.value.details == {"status": str(status)}


def test_every_cancellable_status_has_a_cancel_or_refund_transition():
    for status in set(S) - FINAL:
        assert {S.CANCELLED, S.REFUNDED} & ALLOWED_TRANSITIONS[status]


def test_a_payment_can_be_retried_while_awaiting_payment():
    ensure_payment_retryable(S.AWAITING_PAYMENT)


@pytest.mark.parametrize("status", [s for s in S if s is not S.AWAITING_PAYMENT], ids=str)
def test_a_payment_cannot_be_retried_in_any_other_status(status):
    with pytest.raises(InvalidState):
        ensure_payment_retryable(status)


@pytest.mark.parametrize("status", sorted(EXPIRABLE), ids=str)
def test_an_expirable_booking_is_expired_from_the_moment_its_hold_ends(status):
    assert is_expired(status, NOW, NOW)
    assert is_expired(status, NOW - timedelta(seconds=1), NOW)
    assert not is_expired(status, NOW + timedelta(microseconds=1), NOW)
    assert not is_expired(status, None, NOW)


@pytest.mark.parametrize("status", sorted(set(S) - EXPIRABLE), ids=str)
def test_a_booking_that_is_not_expirable_is_never_expired(status):
    assert not is_expired(status, NOW - timedelta(days=1), NOW)


def test_a_failed_payment_attempt_leaves_the_customer_the_retry_window():
    created = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    hold = RetryHold(window=timedelta(minutes=10), longest=timedelta(hours=1))
    # Shortly before the hold ran out: extended to ten minutes from now.
    now = created + timedelta(minutes=14)
    assert hold.extended(created + timedelta(minutes=15), now, created) == now + timedelta(minutes=10)
    # A hold that runs longer than the window already keeps its end.
    assert hold.extended(created + timedelta(minutes=30), now, created) == created + timedelta(minutes=30)


def test_failed_attempts_cannot_hold_inventory_past_the_longest_hold():
    created = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    hold = RetryHold(window=timedelta(minutes=10), longest=timedelta(hours=1))
    expires = created + timedelta(minutes=15)
    for minutes in range(14, 200, 9):  # a client failing an attempt every nine minutes
        expires = hold.extended(expires, created + timedelta(minutes=minutes), created)
    assert expires == created + timedelta(hours=1)
