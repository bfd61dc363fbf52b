"""When a time-slot resource can be booked: its weekly hours, in its own time zone, and its rules.

One definition serves both the search and the booking: `bookable_windows` is what a client is
shown as free, and `slot_refusal` accepts a slot exactly when it lies inside one of those windows
and on the resource's granularity (property-tested in tests/unit/test_schedule.py, across DST
changes). Hours are wall-clock times in the resource's IANA zone: "09:00" is nine in the morning
there in winter and in summer, whatever that is in UTC.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.availability import Interval, free_windows, slot_fits

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Opening hours of one day: (opens, closes) wall-clock pairs; closes None is midnight at the end.
DayHours = tuple[tuple[time, time | None], ...]


class SlotRefusal(enum.StrEnum):
    """Why a slot cannot be booked; each is the code the API and the placement answer with."""

    TOO_SOON = "too_soon"
    TOO_FAR_AHEAD = "too_far_ahead"
    OFF_GRANULARITY = "off_granularity"
    OUTSIDE_AVAILABILITY = "outside_availability"
    #: Another booking holds the time, or its buffer does.
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Schedule:
    timezone: str = "UTC"
    #: Hours per weekday, Monday 0 to Sunday 6; a day not given is closed.
    weekly: Mapping[int, DayHours] = field(default_factory=dict)
    #: Other hours on a date (an empty tuple: closed that day).
    exceptions: Mapping[date, DayHours] = field(default_factory=dict)
    buffer: timedelta = timedelta(0)
    min_notice: timedelta = timedelta(0)
    max_advance: timedelta = timedelta(days=365)
    granularity: timedelta = timedelta(minutes=1)

    def hours_on(self, day: date) -> DayHours:
        return self.exceptions.get(day, self.weekly.get(day.weekday(), ()))


def parse_clock(text: str) -> time | None:
    """"HH:MM" as a time of day; "24:00" (the end of the day) as None."""
    hours, minutes = text.split(":")
    if (int(hours), int(minutes)) == (24, 0):
        return None
    return time(int(hours), int(minutes))


def parse_day(pairs: Iterable[Sequence[str]]) -> DayHours:
    """[["09:00", "12:00"], ...] as a day's hours; raises ValueError if an interval is empty or
    intervals overlap."""
    hours = sorted(((_opening(opens), parse_clock(closes)) for opens, closes in pairs), key=lambda pair: pair[0])
    for index, (opens, closes) in enumerate(hours):
        if closes is not None and closes <= opens:
            raise ValueError(f"{opens:%H:%M}-{closes:%H:%M} closes before it opens")
        following = hours[index + 1] if index + 1 < len(hours) else None
        if following is not None and (closes is None or following[0] < closes):
            raise ValueError("a day's intervals must not overlap")
    return tuple(hours)


def _opening(text: str) -> time:
    opens = parse_clock(text)
    if opens is None:
        raise ValueError("an interval cannot open at 24:00")
    return opens


def opening_hours(schedule: Schedule, within: Interval) -> list[Interval]:
    """The UTC periods the resource is open that touch `within` (whole, not clipped), in order,
    with periods that meet (17:00-24:00 then 00:00-02:00) joined into one."""
    zone = ZoneInfo(schedule.timezone)
    # A day before and after: a local day can reach into the neighbouring UTC days.
    first, last = within.starts_at.astimezone(zone).date(), within.ends_at.astimezone(zone).date()
    periods: list[Interval] = []
    day = first - timedelta(days=1)
    while day <= last + timedelta(days=1):
        periods.extend(_day_periods(schedule.hours_on(day), day, zone))
        day += timedelta(days=1)
    return [period for period in _joined(periods) if period.overlaps(within)]


def _day_periods(hours: DayHours, day: date, zone: ZoneInfo) -> list[Interval]:
    periods = []
    for opens, closes in hours:
        start = _instant(day, opens, zone)
        end = _instant(day + timedelta(days=1), time(0), zone) if closes is None else _instant(day, closes, zone)
        if end > start:  # an interval wholly inside a DST jump is empty
            periods.append(Interval(start, end))
    return periods


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The instant the wall clock in `zone` reads `clock` on `day`: its first reading when the
    clocks go back; when they jump over it, the jump (from then on the clock reads later)."""
    wall = datetime.combine(day, clock)
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    return _jump(wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first, zone)


def _jump(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first second in (before, after] with `after`'s UTC offset: the DST change between."""
    offset = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _joined(periods: list[Interval]) -> list[Interval]:
    joined: list[Interval] = []
    for period in sorted(periods):
        if joined and period.starts_at <= joined[-1].ends_at:
            joined[-1] = Interval(joined[-1].starts_at, max(joined[-1].ends_at, period.ends_at))
        else:
            joined.append(period)
    return joined


def bookable_windows(
    schedule: Schedule, busy: Iterable[Interval], within: Interval, now: datetime
) -> list[Interval]:
    """The free windows a client is shown: open hours, from the minimum notice to the maximum
    advance, minus other bookings widened by the buffer on both sides; clipped to `within`."""
    horizon = Interval(now + schedule.min_notice, now + schedule.max_advance)
    if not horizon.overlaps(within):
        return []
    clipped = Interval(max(within.starts_at, horizon.starts_at), min(within.ends_at, horizon.ends_at))
    blocked = [Interval(b.starts_at - schedule.buffer, b.ends_at + schedule.buffer) for b in busy]
    return free_windows(opening_hours(schedule, clipped), blocked, clipped)


def on_granularity(schedule: Schedule, slot: Interval) -> bool:
    """Both ends fall on the granularity, counted in wall-clock minutes from local midnight."""
    zone, step = ZoneInfo(schedule.timezone), int(schedule.granularity.total_seconds())
    for instant in (slot.starts_at, slot.ends_at):
        local = instant.astimezone(zone)
        if (local.hour * 3600 + local.minute * 60 + local.second) % step or local.microsecond:
            return False
    return True


def slot_refusal(
    schedule: Schedule, slot: Interval, now: datetime, busy: Iterable[Interval] = ()
) -> SlotRefusal | None:
    """Why `slot` cannot be booked now, or None. Without `busy` (the API, which reads no other
    bookings) only the resource's own rules are checked; the placement passes them."""
    if slot.starts_at < now + schedule.min_notice:
        return SlotRefusal.TOO_SOON
    if slot.ends_at > now + schedule.max_advance:
        return SlotRefusal.TOO_FAR_AHEAD
    if not on_granularity(schedule, slot):
        return SlotRefusal.OFF_GRANULARITY
    if not slot_fits(opening_hours(schedule, slot), slot):
        return SlotRefusal.OUTSIDE_AVAILABILITY
    if not slot_fits(bookable_windows(schedule, busy, slot, now), slot):
        return SlotRefusal.UNAVAILABLE
    return None
