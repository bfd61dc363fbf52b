"""Prices are computed on the server only, in integer minor units."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from domain.errors import InvalidRequest

MAX_SLOT_MINUTES = 7 * 24 * 60


def seat_prices(seat_tiers: Sequence[str], tier_prices: Mapping[str, int]) -> list[int]:
    """The price of each seat, by its tier, in the order given."""
    missing = sorted({tier for tier in seat_tiers if tier not in tier_prices})
    if missing:
        raise InvalidRequest(
            "the event has no price for some seat tiers", details={"tiers": missing}
        )
    return [tier_prices[tier] for tier in seat_tiers]


def slot_minutes(starts_at: datetime, ends_at: datetime) -> int:
    """Whole minutes billed for `[starts_at, ends_at)`; a started minute counts."""
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidRequest("times must carry a UTC offset (RFC 3339)")
    if ends_at <= starts_at:
        raise InvalidRequest(
            "ends_at must be after starts_at", details=[{"field": "ends_at", "code": "before_start"}]
        )
    minutes = math.ceil((ends_at - starts_at).total_seconds() / 60)
    if minutes > MAX_SLOT_MINUTES:
        raise InvalidRequest(
            "a time slot can last at most 7 days",
            details=[{"field": "ends_at", "code": "too_long"}],
        )
    return minutes


def slot_price(rate_per_minute: int, starts_at: datetime, ends_at: datetime) -> int:
    return rate_per_minute * slot_minutes(starts_at, ends_at)
