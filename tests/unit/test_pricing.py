"""Server-side prices in integer minor units: seats by tier, time slots by started minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidRequest
from domain.pricing import MAX_SLOT_MINUTES, seat_prices, slot_minutes, slot_price

START = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
PROPERTY = settings(max_examples=200, deadline=None, database=None)


def test_each_seat_is_priced_by_its_tier_in_the_order_given():
    prices = {"stalls": 4500, "balcony": 3000}
    assert seat_prices(["balcony", "stalls", "balcony"], prices) == [3000, 4500, 3000]


def test_no_seats_cost_nothing():
    assert seat_prices([], {"stalls": 4500}) == []


def test_a_seat_tier_without_a_price_is_an_invalid_request_listing_each_missing_tier_once():
    with pytest.raises(InvalidRequest) as raised:
        seat_prices(["vip", "stalls", "box", "vip"], {"stalls": 4500})
    assert raised.value.details == {"tiers": ["box", "vip"]}
    assert raised.value.code == "validation_error"


def test_a_slot_of_whole_minutes_is_billed_exactly():
    assert slot_minutes(START, START + timedelta(minutes=30)) == 30


@pytest.mark.parametrize(
    "extra", [timedelta(microseconds=1), timedelta(seconds=1), timedelta(seconds=59)], ids=str
)
def test_a_started_minute_is_billed_as_a_whole_minute(extra):
    assert slot_minutes(START, START + timedelta(minutes=30) + extra) == 31


def test_a_slot_shorter_than_a_minute_is_billed_one_minute():
    assert slot_minutes(START, START + timedelta(microseconds=1)) == 1


def test_the_slot_price_is_the_rate_times_the_billed_minutes():
    assert slot_price(125, START, START + timedelta(minutes=90, seconds=1)) == 125 * 91


def test_minutes_are_counted_in_absolute_time_across_utc_offsets():
    starts_at = datetime(2030, 6, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))  # 08:00 UTC
    assert slot_minutes(starts_at, datetime(2030, 6, 1, 9, 0, tzinfo=UTC)) == 60


@pytest.mark.parametrize(
    "ends_at", [START, START - timedelta(microseconds=1), START - timedelta(hours=1)]
)
def test_a_slot_that_ends_at_or_before_its_start_is_rejected(ends_at):
    with pytest.raises(InvalidRequest) as raised:
        slot_minutes(START, ends_at)
    assert raised.value.details == [{"field": "ends_at", "code": "before_start"}]


def test_a_slot_of_exactly_seven_days_is_allowed():
    assert slot_minutes(START, START + timedelta(days=7)) == MAX_SLOT_MINUTES == 7 * 24 * 60


@pytest.mark.parametrize(
    "extra", [timedelta(microseconds=1), timedelta(minutes=1), timedelta(days=30)], ids=str
)
def test_a_slot_longer_than_seven_days_is_rejected(extra):
    with pytest.raises(InvalidRequest) as raised:
        slot_price(100, START, START + timedelta(days=7) + extra)
    assert raised.value.details == [{"field": "ends_at", "code": "too_long"}]


@pytest.mark.parametrize(
    ("starts_at", "ends_at"),
    [
        (START.replace(tzinfo=None), START + timedelta(hours=1)),
        (START, (START + timedelta(hours=1)).replace(tzinfo=None)),
        (START.replace(tzinfo=None), (START + timedelta(hours=1)).replace(tzinfo=None)),
    ],
    ids=["naive-start", "naive-end", "both-naive"],
)
def test_times_without_a_utc_offset_are_rejected(starts_at, ends_at):
    with pytest.raises(InvalidRequest, match="UTC offset"):
        slot_minutes(starts_at, ends_at)


@PROPERTY
@given(st.integers(min_value=1, max_value=MAX_SLOT_MINUTES * 60 * 10**6))
def test_billed_minutes_are_the_duration_rounded_up_to_the_minute(microseconds):
    duration = timedelta(microseconds=microseconds)
    minutes = slot_minutes(START, START + duration)
    assert timedelta(minutes=minutes - 1) < duration <= timedelta(minutes=minutes)


@PROPERTY
@given(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=1, max_value=MAX_SLOT_MINUTES),
    st.integers(min_value=1, max_value=MAX_SLOT_MINUTES),
)
def test_a_longer_slot_never_costs_less(rate, a, b):
    shorter, longer = sorted((a, b))
    price_shorter = slot_price(rate, START, START + timedelta(minutes=shorter))
    assert price_shorter <= slot_price(rate, START, START + timedelta(minutes=longer))
    assert price_shorter == rate * shorter
