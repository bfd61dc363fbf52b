"""When an event's places are for sale: its sale window, its start, and whether it was cancelled."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class EventStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    ON_SALE = "on_sale"
    SALES_CLOSED = "sales_closed"
    CANCELLED = "cancelled"


#: The code a booking is refused with (422 at the API, `rejected` at placement).
SALES_CLOSED = "sales_closed"


@dataclass(frozen=True)
class SaleWindow:
    sales_start_at: datetime
    sales_end_at: datetime
    starts_at: datetime
    cancelled: bool = False

    def status(self, now: datetime) -> EventStatus:
        """On sale from `sales_start_at` until `sales_end_at` or the start, whichever comes first."""
        if self.cancelled:
            return EventStatus.CANCELLED
        if now < self.sales_start_at:
            return EventStatus.SCHEDULED
        if now >= min(self.sales_end_at, self.starts_at):
            return EventStatus.SALES_CLOSED
        return EventStatus.ON_SALE


def sales_refusal(window: SaleWindow, now: datetime) -> str | None:
    """`sales_closed` unless the event is on sale at `now`."""
    return None if window.status(now) is EventStatus.ON_SALE else SALES_CLOSED


@dataclass(frozen=True)
class Places:
    """A general-admission event's places: `held` counts holds that have not lapsed; `lapsed`,
    holds that have (shown as available, still claimed until their booking is expired)."""

    capacity: int
    held: int
    sold: int
    lapsed: int = 0

    @property
    def available(self) -> int:
        return max(0, self.capacity - self.held - self.sold)

    def shortfall(self, quantity: int) -> int:
        """How many places of lapsed holds must be freed before `quantity` more can be claimed."""
        return max(0, quantity - (self.capacity - self.held - self.sold - self.lapsed))
