"""Time-slot availability: free windows, whether a slot fits, great-circle distance."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.availability import EARTH_RADIUS_KM, Interval, distance_km, free_windows, slot_fits

DAY = datetime(2030, 6, 3, tzinfo=UTC)
PROPERTY = settings(max_examples=200, deadline=None, database=None)
BERLIN = (52.5200, 13.4050)
MUNICH = (48.1351, 11.5820)


def at(hour: float) -> datetime:
    return DAY + timedelta(hours=hour)


def span(start: float, end: float) -> Interval:
    return Interval(at(start), at(end))


def test_intervals_that_only_touch_do_not_overlap():
    assert not span(9, 10).overlaps(span(10, 11))
    assert not span(10, 11).overlaps(span(9, 10))
    assert span(9, 10).overlaps(span(9.5, 11))


def test_an_interval_contains_itself_and_nothing_that_sticks_out():
    assert span(9, 17).contains(span(9, 17))
    assert not span(9, 17).contains(span(8.5, 10))
    assert not span(9, 17).contains(span(16, 17.5))


def test_a_slot_inside_a_window_fits():
    assert slot_fits([span(9, 12), span(13, 17)], span(14, 15))


def test_a_slot_filling_a_window_exactly_fits():
    assert slot_fits([span(9, 12)], span(9, 12))


def test_a_slot_sticking_out_of_its_window_does_not_fit():
    assert not slot_fits([span(9, 12)], span(11, 12.5))
    assert not slot_fits([span(9, 12)], span(8.5, 10))


def test_a_slot_spanning_two_adjacent_windows_does_not_fit():
    assert not slot_fits([span(9, 12), span(12, 17)], span(11, 13))


def test_no_slot_fits_without_windows():
    assert not slot_fits([], span(9, 10))


def test_without_busy_periods_the_windows_are_free():
    assert free_windows([span(9, 12), span(13, 17)], []) == [span(9, 12), span(13, 17)]


def test_a_busy_period_in_the_middle_splits_a_window():
    assert free_windows([span(9, 17)], [span(12, 13)]) == [span(9, 12), span(13, 17)]


def test_a_busy_period_at_the_start_of_a_window_trims_it():
    assert free_windows([span(9, 17)], [span(9, 10)]) == [span(10, 17)]


def test_a_busy_period_at_the_end_of_a_window_trims_it():
    assert free_windows([span(9, 17)], [span(16, 17)]) == [span(9, 16)]


def test_busy_periods_reaching_past_both_edges_trim_the_window():
    assert free_windows([span(9, 17)], [span(7, 10), span(16, 19)]) == [span(10, 16)]


def test_a_busy_period_covering_the_window_leaves_nothing_free():
    assert free_windows([span(9, 17)], [span(8, 18)]) == []
    assert free_windows([span(9, 17)], [span(9, 17)]) == []


def test_busy_periods_that_only_touch_a_window_leave_it_whole():
    assert free_windows([span(9, 17)], [span(8, 9), span(17, 18)]) == [span(9, 17)]


def test_overlapping_busy_periods_are_merged():
    assert free_windows([span(9, 17)], [span(10, 12), span(11, 13)]) == [span(9, 10), span(13, 17)]


def test_a_busy_period_nested_in_another_changes_nothing():
    assert free_windows([span(9, 17)], [span(10, 14), span(11, 12)]) == [span(9, 10), span(14, 17)]


def test_back_to_back_busy_periods_leave_no_zero_length_gap():
    assert free_windows([span(9, 17)], [span(10, 11), span(11, 12)]) == [span(9, 10), span(12, 17)]


def test_free_windows_come_in_time_order_whatever_the_input_order():
    windows = [span(13, 17), span(9, 12)]
    busy = [span(15, 16), span(10, 11)]
    assert free_windows(windows, busy) == [span(9, 10), span(11, 12), span(13, 15), span(16, 17)]


def test_free_windows_are_clipped_to_the_period_asked_about():
    result = free_windows([span(9, 12), span(13, 17)], [span(14, 15)], within=span(10, 16))
    assert result == [span(10, 12), span(13, 14), span(15, 16)]


def test_windows_outside_or_only_touching_the_period_asked_about_are_left_out():
    result = free_windows([span(6, 9), span(9, 12), span(17, 20)], [], within=span(9, 17))
    assert result == [span(9, 12)]


def test_a_period_inside_one_window_gives_that_period_back():
    assert free_windows([span(0, 24)], [], within=span(10, 11)) == [span(10, 11)]


def test_berlin_to_munich_is_about_504_km():
    assert distance_km(*BERLIN, *MUNICH) == pytest.approx(504, rel=0.01)


def test_the_distance_from_a_place_to_itself_is_zero():
    assert distance_km(*BERLIN, *BERLIN) == 0


def test_one_degree_of_latitude_is_about_111_km():
    assert distance_km(0, 0, 1, 0) == pytest.approx(111.2, rel=0.001)


def test_antipodes_are_half_the_earth_apart():
    assert distance_km(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert distance_km(90, 0, -90, 0) == pytest.approx(math.pi * EARTH_RADIUS_KM)


def test_the_distance_does_not_depend_on_which_way_round_the_antimeridian_is_crossed():
    assert distance_km(0, 179.5, 0, -179.5) == pytest.approx(distance_km(0, 0, 0, 1))


# Times on a minute grid over one day make overlaps, shared edges and nesting common.
minutes = st.integers(min_value=0, max_value=24 * 60)


def grid_interval(a: int, b: int) -> Interval:
    return Interval(DAY + timedelta(minutes=min(a, b)), DAY + timedelta(minutes=max(a, b)))


intervals = (
    st.tuples(minutes, minutes).filter(lambda ab: ab[0] != ab[1]).map(lambda ab: grid_interval(*ab))
)
# Availability windows of one resource do not overlap one another: cut the day at sorted points.
disjoint_windows = (
    st.lists(minutes, unique=True, max_size=10)
    .map(sorted)
    .map(lambda points: [grid_interval(a, b) for a, b in zip(points[::2], points[1::2])])
)


def covers(intervals_: list[Interval], moment: datetime) -> bool:
    return any(i.starts_at <= moment < i.ends_at for i in intervals_)


@PROPERTY
@given(disjoint_windows, st.lists(intervals, max_size=8), st.none() | intervals)
def test_free_windows_lie_inside_the_windows_and_never_overlap_a_busy_period(windows, busy, within):
    free = free_windows(windows, busy, within)
    for piece in free:
        assert piece.starts_at < piece.ends_at
        assert slot_fits(windows, piece)
        assert within is None or within.contains(piece)
        assert not any(piece.overlaps(period) for period in busy)
    for earlier, later in pairwise(free):
        assert earlier.ends_at <= later.starts_at


@PROPERTY
@given(disjoint_windows, st.lists(intervals, max_size=8), st.none() | intervals)
def test_every_free_minute_is_in_some_free_window(windows, busy, within):
    free = free_windows(windows, busy, within)
    for minute in range(0, 24 * 60, 7):
        moment = DAY + timedelta(minutes=minute)
        expected = (
            covers(windows, moment)
            and not covers(busy, moment)
            and (within is None or covers([within], moment))
        )
        assert covers(free, moment) == expected


@PROPERTY
@given(disjoint_windows, st.lists(intervals, max_size=8), intervals)
def test_a_slot_that_fits_a_free_window_fits_the_windows_and_clashes_with_no_busy_period(
    windows, busy, slot
):
    if slot_fits(free_windows(windows, busy), slot):
        assert slot_fits(windows, slot)
        assert not any(slot.overlaps(period) for period in busy)


latitudes = st.floats(min_value=-90, max_value=90)
longitudes = st.floats(min_value=-180, max_value=180)


@PROPERTY
@given(latitudes, longitudes, latitudes, longitudes)
def test_a_distance_is_symmetric_and_at_most_half_the_circumference(lat1, lng1, lat2, lng2):
    there = distance_km(lat1, lng1, lat2, lng2)
    back = distance_km(lat2, lng2, lat1, lng1)
    assert there == pytest.approx(back, abs=1e-6)
    assert 0 <= there <= math.pi * EARTH_RADIUS_KM + 1e-6


@PROPERTY
@given(latitudes, longitudes)
def test_the_antipode_of_any_point_is_half_the_circumference_away(lat, lng):
    assert distance_km(lat, lng, -lat, lng + 180) == pytest.approx(
        math.pi * EARTH_RADIUS_KM, rel=1e-6
    )
