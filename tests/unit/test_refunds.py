"""Refund policy: all of it back more than 48 h before the start, half more than 2 h before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.refunds import RefundPolicy, RefundTier

START = datetime(2030, 6, 1, 20, 0, tzinfo=UTC)
PROPERTY = settings(max_examples=200, deadline=None, database=None)
POLICY = RefundPolicy.default()


def cancelled_before_start(**notice: float) -> datetime:
    return START - timedelta(**notice)


def test_the_default_policy_is_full_refund_after_48_hours_and_half_after_2_hours():
    assert POLICY.tiers == (
        RefundTier(timedelta(hours=48), 100),
        RefundTier(timedelta(hours=2), 50),
    )


@pytest.mark.parametrize(
    ("notice", "percent"),
    [
        (timedelta(days=30), 100),
        (timedelta(hours=48, seconds=1), 100),
        (timedelta(hours=48, microseconds=1), 100),
        (timedelta(hours=48), 50),
        (timedelta(hours=48) - timedelta(microseconds=1), 50),
        (timedelta(hours=2, seconds=1), 50),
        (timedelta(hours=2, microseconds=1), 50),
        (timedelta(hours=2), 0),
        (timedelta(hours=1), 0),
        (timedelta(0), 0),
        (-timedelta(hours=1), 0),
    ],
    ids=str,
)
def test_the_refund_percent_at_each_tier_boundary(notice, percent):
    assert POLICY.percent_at(START, START - notice) == percent


def test_refund_is_full_more_than_48_hours_before_start():
    assert (
        POLICY.refund_amount(10_000, START, cancelled_before_start(hours=48, seconds=1)) == 10_000
    )


def test_refund_is_half_at_exactly_48_hours_before_start():
    assert POLICY.refund_amount(10_000, START, cancelled_before_start(hours=48)) == 5_000


def test_refund_is_nothing_at_exactly_2_hours_before_start():
    assert POLICY.refund_amount(10_000, START, cancelled_before_start(hours=2)) == 0


def test_refund_is_nothing_after_the_start():
    assert POLICY.refund_amount(10_000, START, START + timedelta(minutes=5)) == 0


@pytest.mark.parametrize(("captured", "refunded"), [(999, 499), (1, 0), (3, 1), (10_001, 5_000)])
def test_a_partial_refund_is_rounded_down_to_the_minor_unit(captured, refunded):
    assert POLICY.refund_amount(captured, START, cancelled_before_start(hours=3)) == refunded


def test_nothing_captured_refunds_nothing():
    assert POLICY.refund_amount(0, START, cancelled_before_start(days=10)) == 0


@pytest.mark.parametrize(
    ("spec", "notice"),
    [
        ("30s:10", timedelta(seconds=30)),
        ("15m:10", timedelta(minutes=15)),
        ("6h:10", timedelta(hours=6)),
        ("7d:10", timedelta(days=7)),
    ],
)
def test_a_tier_notice_is_read_in_seconds_minutes_hours_or_days(spec, notice):
    assert RefundPolicy.parse(spec).tiers == (RefundTier(notice, 10),)


def test_tiers_are_ordered_from_the_longest_notice_whatever_the_order_written():
    assert RefundPolicy.parse("2h:50, 7d:100 ,48h:75").tiers == (
        RefundTier(timedelta(days=7), 100),
        RefundTier(timedelta(hours=48), 75),
        RefundTier(timedelta(hours=2), 50),
    )


def test_empty_parts_of_a_policy_are_ignored():
    assert RefundPolicy.parse(",48h:100,,2h:50,") == POLICY


def test_an_empty_policy_never_refunds():
    policy = RefundPolicy.parse("")
    assert policy.tiers == ()
    assert policy.refund_amount(10_000, START, cancelled_before_start(days=365)) == 0


def test_a_zero_notice_tier_refunds_until_the_very_start():
    policy = RefundPolicy.parse("0s:20")
    assert policy.percent_at(START, START - timedelta(microseconds=1)) == 20
    assert policy.percent_at(START, START) == 0


@pytest.mark.parametrize("percent", ["0", "100"])
def test_percent_bounds_zero_and_one_hundred_are_accepted(percent):
    assert RefundPolicy.parse(f"1h:{percent}").tiers[0].percent == int(percent)


@pytest.mark.parametrize(
    "spec",
    [
        "48:100",
        "48x:100",
        "48H:100",
        "h:100",
        ":100",
        "48h",
        "48h:",
        "48h:abc",
        "1.5h:50",
        "-1h:50",
        "48h:-1",
        "48h:101",
        "48h:1000",
        "48h: 100",
        "48h:100:5",
        "48h:100,2h",
    ],
)
def test_a_malformed_policy_is_refused(spec):
    with pytest.raises(ValueError):
        RefundPolicy.parse(spec)


# A policy as an operator would write it: a longer notice never refunds less.
monotone_policies = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=30 * 86400), st.integers(min_value=0, max_value=100)
    ),
    max_size=5,
    unique_by=lambda tier: tier[0],
).map(
    lambda tiers: RefundPolicy.parse(
        ",".join(
            f"{notice}s:{percent}"
            for notice, percent in zip(sorted(t[0] for t in tiers), sorted(t[1] for t in tiers))
        )
    )
)
any_policies = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=30 * 86400), st.integers(min_value=0, max_value=100)
    ),
    max_size=5,
).map(lambda tiers: RefundPolicy.parse(",".join(f"{n}s:{p}" for n, p in tiers)))
seconds_before_start = st.integers(min_value=-86400, max_value=40 * 86400)


@PROPERTY
@given(any_policies, st.integers(min_value=0, max_value=10**9), seconds_before_start)
def test_a_refund_is_never_negative_nor_more_than_was_captured(policy, captured, notice):
    amount = policy.refund_amount(captured, START, START - timedelta(seconds=notice))
    assert 0 <= amount <= captured


@PROPERTY
@given(
    monotone_policies,
    st.integers(min_value=0, max_value=10**9),
    seconds_before_start,
    seconds_before_start,
)
def test_a_refund_never_grows_as_the_start_approaches(policy, captured, a, b):
    earlier, later = START - timedelta(seconds=max(a, b)), START - timedelta(seconds=min(a, b))
    assert policy.refund_amount(captured, START, earlier) >= policy.refund_amount(
        captured, START, later
    )


@PROPERTY
@given(monotone_policies)
def test_a_parsed_policy_has_its_tiers_ordered_from_the_longest_notice(policy):
    notices = [tier.notice for tier in policy.tiers]
    assert notices == sorted(notices, reverse=True)
