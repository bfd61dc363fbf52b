"""Timings of the worker that bound how long a killed worker's bookings wait."""

from __future__ import annotations

from datetime import timedelta

from tasks.runtime import (
    STRIPE_ATTEMPTS,
    STRIPE_RETRY_WAITS_SECONDS,
    stripe_budget_wait_seconds,
    stripe_timeout_seconds,
)
from tasks.supervisor import MAX_BACKOFF_SECONDS, QUICK_RESTARTS, _backoff


def test_a_stripe_call_with_its_retries_ends_before_its_step_lease():
    for seconds in (20, 30, 60, 120):
        lease = timedelta(seconds=seconds)
        attempt = stripe_budget_wait_seconds(lease) + stripe_timeout_seconds(lease)
        assert STRIPE_ATTEMPTS * attempt + STRIPE_RETRY_WAITS_SECONDS <= seconds


def test_a_short_lease_does_not_cut_stripe_attempts_below_a_few_seconds():
    assert stripe_timeout_seconds(timedelta(seconds=3)) == 5.0


def test_a_worker_killed_a_few_times_in_a_row_is_restarted_at_once():
    assert [_backoff(n) for n in range(QUICK_RESTARTS + 1)] == [0.0] * (QUICK_RESTARTS + 1)


def test_a_worker_that_cannot_start_is_restarted_ever_more_slowly_up_to_a_limit():
    waits = [_backoff(QUICK_RESTARTS + n) for n in range(1, 10)]
    assert waits[:3] == [1.0, 2.0, 4.0]
    assert waits == sorted(waits) and waits[-1] == MAX_BACKOFF_SECONDS
