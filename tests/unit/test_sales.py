"""An event's sale window: when it is on sale, and what a general-admission event has left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.sales import EventStatus, Places, SaleWindow, sales_refusal

OPENS = datetime(2030, 5, 1, 10, tzinfo=UTC)
SHOW = datetime(2030, 6, 1, 19, tzinfo=UTC)
WINDOW = SaleWindow(sales_start_at=OPENS, sales_end_at=SHOW, starts_at=SHOW)


def test_an_event_is_scheduled_before_its_sale_opens_and_closed_once_it_starts():
    assert WINDOW.status(OPENS - timedelta(seconds=1)) is EventStatus.SCHEDULED
    assert WINDOW.status(OPENS) is EventStatus.ON_SALE
    assert WINDOW.status(SHOW - timedelta(seconds=1)) is EventStatus.ON_SALE
    assert WINDOW.status(SHOW) is EventStatus.SALES_CLOSED


def test_a_sale_window_ending_after_the_start_still_closes_at_the_start():
    late = SaleWindow(OPENS, SHOW + timedelta(days=1), SHOW)
    assert late.status(SHOW + timedelta(minutes=5)) is EventStatus.SALES_CLOSED


def test_a_cancelled_event_is_never_on_sale():
    assert SaleWindow(OPENS, SHOW, SHOW, cancelled=True).status(OPENS + timedelta(days=1)) is EventStatus.CANCELLED


@settings(max_examples=300, deadline=None, database=None)
@given(st.datetimes(timezones=st.just(UTC)), st.integers(1, 10**7), st.integers(-10**7, 10**7),
       st.datetimes(timezones=st.just(UTC)), st.booleans())
def test_a_booking_is_refused_exactly_when_now_is_outside_the_window_or_after_the_start(
    start, length, start_offset, now, cancelled
):
    try:
        end, show = start + timedelta(seconds=length), start + timedelta(seconds=start_offset)
    except OverflowError:
        return
    window = SaleWindow(start, end, show, cancelled)
    open_now = not cancelled and start <= now < end and now < show
    assert (sales_refusal(window, now) is None) == open_now


def test_places_available_never_go_below_zero():
    assert Places(capacity=10, held=3, sold=5).available == 2
    assert Places(capacity=10, held=6, sold=5).available == 0
