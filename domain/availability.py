"""Availability of time-slot resources: free windows, fitting a slot, distance."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open period `[starts_at, ends_at)`."""

    starts_at: datetime
    ends_at: datetime

    def contains(self, other: Interval) -> bool:
        return self.starts_at <= other.starts_at and other.ends_at <= self.ends_at

    def overlaps(self, other: Interval) -> bool:
        return self.starts_at < other.ends_at and other.starts_at < self.ends_at


def slot_fits(windows: Iterable[Interval], slot: Interval) -> bool:
    """A slot is bookable only inside one availability window."""
    return any(window.contains(slot) for window in windows)


def free_windows(
    windows: Iterable[Interval], busy: Iterable[Interval], within: Interval | None = None
) -> list[Interval]:
    """Availability windows minus busy periods, clipped to `within`, in time order."""
    busy_sorted = sorted(busy)
    free: list[Interval] = []
    for window in sorted(windows):
        if within is not None:
            if not window.overlaps(within):
                continue
            window = Interval(
                max(window.starts_at, within.starts_at), min(window.ends_at, within.ends_at)
            )
        free.extend(_subtract(window, busy_sorted))
    return free


def _subtract(window: Interval, busy_sorted: Sequence[Interval]) -> list[Interval]:
    pieces = []
    cursor = window.starts_at
    for period in busy_sorted:
        if period.ends_at <= cursor or period.starts_at >= window.ends_at:
            continue
        if period.starts_at > cursor:
            pieces.append(Interval(cursor, period.starts_at))
        cursor = max(cursor, period.ends_at)
        if cursor >= window.ends_at:
            break
    if cursor < window.ends_at:
        pieces.append(Interval(cursor, window.ends_at))
    return pieces


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance by the haversine formula."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))
