"""Weekly hours in a resource's own time zone, and the slot rules that follow from them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.availability import Interval, slot_fits
from domain.schedule import (
    Schedule,
    SlotRefusal,
    bookable_windows,
    on_granularity,
    opening_hours,
    parse_day,
    slot_refusal,
)

PROPERTY = settings(max_examples=300, deadline=None, database=None)
NINE_TO_FIVE = parse_day([["09:00", "17:00"]])
BERLIN_WEEKDAYS = Schedule("Europe/Berlin", {day: NINE_TO_FIVE for day in range(7)})
NOW = datetime(2030, 3, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def span(start: datetime, end: datetime) -> Interval:
    return Interval(start, end)


def test_nine_to_five_in_berlin_moves_an_hour_in_utc_when_the_clocks_go_forward():
    week = opening_hours(BERLIN_WEEKDAYS, span(utc(2030, 3, 30), utc(2030, 4, 1)))
    assert span(utc(2030, 3, 30, 8), utc(2030, 3, 30, 16)) in week  # Saturday, CET
    assert span(utc(2030, 3, 31, 7), utc(2030, 3, 31, 15)) in week  # Sunday, CEST


def test_hours_that_the_clocks_jump_over_open_when_the_clock_reaches_them():
    schedule = Schedule("Europe/Berlin", {6: parse_day([["02:30", "04:00"]])})
    # 2030-03-31: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
    assert opening_hours(schedule, span(utc(2030, 3, 31), utc(2030, 4, 1))) == [
        span(utc(2030, 3, 31, 1), utc(2030, 3, 31, 2))
    ]


def test_several_intervals_a_day_and_a_lunch_break():
    schedule = Schedule("UTC", {0: parse_day([["09:00", "12:00"], ["13:00", "17:00"]])})
    monday = span(utc(2030, 6, 3), utc(2030, 6, 4))
    assert opening_hours(schedule, monday) == [
        span(utc(2030, 6, 3, 9), utc(2030, 6, 3, 12)), span(utc(2030, 6, 3, 13), utc(2030, 6, 3, 17)),
    ]
    assert slot_refusal(schedule, span(utc(2030, 6, 3, 11), utc(2030, 6, 3, 14)), NOW) is (
        SlotRefusal.OUTSIDE_AVAILABILITY
    )


def test_hours_until_midnight_join_the_next_days_early_hours():
    schedule = Schedule("UTC", {4: parse_day([["18:00", "24:00"]]), 5: parse_day([["00:00", "02:00"]])})
    night = span(utc(2030, 6, 7, 23), utc(2030, 6, 8, 1))
    assert slot_refusal(schedule, night, NOW) is None


def test_a_dated_exception_closes_a_day_or_gives_it_other_hours():
    closed, short = date(2030, 6, 3), date(2030, 6, 4)
    schedule = Schedule("UTC", {d: NINE_TO_FIVE for d in range(7)},
                        exceptions={closed: (), short: parse_day([["10:00", "12:00"]])})
    assert opening_hours(schedule, span(utc(2030, 6, 3), utc(2030, 6, 3, 23))) == []
    assert opening_hours(schedule, span(utc(2030, 6, 4), utc(2030, 6, 4, 23))) == [
        span(utc(2030, 6, 4, 10), utc(2030, 6, 4, 12))
    ]


def test_each_rule_has_its_own_refusal():
    schedule = Schedule("UTC", {d: NINE_TO_FIVE for d in range(7)}, min_notice=timedelta(hours=2),
                        max_advance=timedelta(days=30), granularity=timedelta(minutes=15))
    now = utc(2030, 6, 3, 8)
    assert slot_refusal(schedule, span(utc(2030, 6, 2, 9), utc(2030, 6, 2, 10)), now) is SlotRefusal.TOO_SOON
    assert slot_refusal(schedule, span(utc(2030, 6, 3, 9), utc(2030, 6, 3, 10)), now) is SlotRefusal.TOO_SOON
    assert slot_refusal(schedule, span(utc(2030, 7, 9, 9), utc(2030, 7, 9, 10)), now) is SlotRefusal.TOO_FAR_AHEAD
    assert slot_refusal(schedule, span(utc(2030, 6, 4, 9, 5), utc(2030, 6, 4, 10)), now) is (
        SlotRefusal.OFF_GRANULARITY
    )
    assert slot_refusal(schedule, span(utc(2030, 6, 4, 16), utc(2030, 6, 4, 18)), now) is (
        SlotRefusal.OUTSIDE_AVAILABILITY
    )
    assert slot_refusal(schedule, span(utc(2030, 6, 4, 10), utc(2030, 6, 4, 11)), now) is None


def test_the_buffer_keeps_a_gap_after_and_before_another_booking():
    schedule = Schedule("UTC", {d: NINE_TO_FIVE for d in range(7)}, buffer=timedelta(minutes=15))
    busy = [span(utc(2030, 6, 4, 10), utc(2030, 6, 4, 11))]
    touching = span(utc(2030, 6, 4, 11), utc(2030, 6, 4, 12))
    assert slot_refusal(schedule, touching, NOW, busy) is SlotRefusal.UNAVAILABLE
    assert slot_refusal(schedule, span(utc(2030, 6, 4, 11, 15), utc(2030, 6, 4, 12)), NOW, busy) is None
    assert slot_refusal(schedule, touching, NOW) is None  # the API's check knows no other bookings


def test_granularity_counts_in_the_resources_own_wall_clock():
    kolkata = Schedule("Asia/Kolkata", granularity=timedelta(minutes=60))
    # 09:00 in Kolkata is 03:30 UTC.
    assert on_granularity(kolkata, span(utc(2030, 6, 4, 3, 30), utc(2030, 6, 4, 4, 30)))
    assert not on_granularity(kolkata, span(utc(2030, 6, 4, 3), utc(2030, 6, 4, 4)))


@pytest.mark.parametrize("pairs", [[["10:00", "09:00"]], [["09:00", "12:00"], ["11:00", "13:00"]],
                                   [["24:00", "24:00"]]])
def test_a_day_whose_intervals_are_empty_or_overlap_is_refused(pairs):
    with pytest.raises(ValueError):
        parse_day(pairs)


def test_a_day_without_intervals_is_closed():
    assert parse_day([]) == ()


# Properties, across DST changes in zones that have them (and a half-hour one) and one that has not.

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata", "UTC"]
#: Days around the 2030 DST changes of those zones.
DAYS = [date(2030, 3, 10), date(2030, 3, 31), date(2030, 4, 7), date(2030, 9, 8), date(2030, 10, 6),
        date(2030, 10, 27), date(2030, 11, 3), date(2030, 6, 15)]

clocks = st.integers(0, 47).map(lambda half_hours: time(half_hours // 2, 30 * (half_hours % 2)))


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[tuple[time, time | None], ...]:
    marks = sorted(set(draw(st.lists(clocks, min_size=0, max_size=6))))
    until_midnight = draw(st.booleans()) and len(marks) % 2 == 1
    pairs = [(marks[i], marks[i + 1]) for i in range(0, len(marks) - 1, 2)]
    if until_midnight:
        pairs.append((marks[-1], None))
    return tuple(pairs)


schedules = st.builds(
    Schedule, timezone=st.sampled_from(ZONES),
    weekly=st.dictionaries(st.integers(0, 6), day_hours(), max_size=7),
    exceptions=st.dictionaries(st.sampled_from(DAYS), day_hours(), max_size=2),
    buffer=st.sampled_from([timedelta(0), timedelta(minutes=10), timedelta(minutes=30)]),
    min_notice=st.sampled_from([timedelta(0), timedelta(hours=3)]),
    max_advance=st.sampled_from([timedelta(days=2), timedelta(days=365)]),
    granularity=st.sampled_from([timedelta(minutes=1), timedelta(minutes=15), timedelta(minutes=30)]),
)
instants = st.builds(
    lambda day, minutes: datetime.combine(day, time(0), UTC) + timedelta(minutes=minutes),
    st.sampled_from(DAYS), st.integers(-36 * 60, 36 * 60),
)


def _wall_clock_open(schedule: Schedule, instant: datetime) -> bool:
    local = instant.astimezone(ZoneInfo(schedule.timezone))
    return any(
        opens <= local.time() and (closes is None or local.time() < closes)
        for opens, closes in schedule.hours_on(local.date())
    )


def _repeated(instant: datetime, zone: ZoneInfo) -> bool:
    local = instant.astimezone(zone).replace(tzinfo=None)
    return local.replace(tzinfo=zone, fold=0).utcoffset() != local.replace(tzinfo=zone, fold=1).utcoffset()


@PROPERTY
@given(schedules, instants)
def test_an_instant_is_open_exactly_when_the_local_wall_clock_is_within_that_days_hours(schedule, instant):
    assume(not _repeated(instant, ZoneInfo(schedule.timezone)))  # a repeated hour is open its first time
    around = Interval(instant - timedelta(days=1), instant + timedelta(days=1))
    is_open = any(p.starts_at <= instant < p.ends_at for p in opening_hours(schedule, around))
    assert is_open == _wall_clock_open(schedule, instant)


@PROPERTY
@given(schedules, instants, st.integers(-48 * 60, 48 * 60), st.integers(1, 6 * 60),
       st.lists(st.tuples(instants, st.integers(1, 180)), max_size=4))
def test_a_slot_is_accepted_exactly_when_it_lies_in_a_window_shown_as_free(schedule, now, offset, length, taken):
    busy = [Interval(start, start + timedelta(minutes=minutes)) for start, minutes in taken]
    starts_at = now + timedelta(minutes=offset)
    slot = Interval(starts_at, starts_at + timedelta(minutes=length))
    shown = bookable_windows(schedule, busy, Interval(slot.starts_at - timedelta(days=1), slot.ends_at + timedelta(days=1)), now)
    accepted = slot_refusal(schedule, slot, now, busy) is None
    assert accepted == (on_granularity(schedule, slot) and slot_fits(shown, slot))


@PROPERTY
@given(schedules, instants, st.lists(st.tuples(instants, st.integers(1, 180)), max_size=4))
def test_free_windows_keep_clear_of_bookings_by_the_buffer_and_stay_in_the_horizon(schedule, now, taken):
    busy = [Interval(start, start + timedelta(minutes=minutes)) for start, minutes in taken]
    within = Interval(now - timedelta(days=1), now + timedelta(days=2))
    for window in bookable_windows(schedule, busy, within, now):
        assert window.starts_at >= now + schedule.min_notice and window.ends_at <= now + schedule.max_advance
        widened = Interval(window.starts_at - schedule.buffer, window.ends_at + schedule.buffer)
        assert not any(widened.overlaps(b) for b in busy)
        assert slot_fits(opening_hours(schedule, window), window)
