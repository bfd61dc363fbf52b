"""Time-based refund policy: how much of a captured amount comes back on cancellation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.payments import RefundChoice


@dataclass(frozen=True)
class RefundTier:
    #: The tier applies when the cancellation comes more than this long before the start.
    notice: timedelta
    percent: int


@dataclass(frozen=True)
class RefundPolicy:
    """Tiers ordered from the longest notice down; no matching tier refunds nothing."""

    tiers: tuple[RefundTier, ...]

    @classmethod
    def default(cls) -> RefundPolicy:
        return cls.parse("48h:100,2h:50")

    @classmethod
    def parse(cls, spec: str) -> RefundPolicy:
        """Parse `48h:100,2h:50` (units s, m, h, d) into a policy."""
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        tiers = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            notice, _, percent = part.partition(":")
            unit = notice[-1:]
            if unit not in units or not notice[:-1].isdigit() or not percent.isdigit():
                raise ValueError(f"bad refund tier {part!r}; expected e.g. 48h:100")
            if not 0 <= int(percent) <= 100:
                raise ValueError(f"refund percent out of range in {part!r}")
            seconds = int(notice[:-1]) * units[unit]
            tiers.append(RefundTier(timedelta(seconds=seconds), int(percent)))
        return cls(tuple(sorted(tiers, key=lambda t: t.notice, reverse=True)))

    def percent_at(self, starts_at: datetime, now: datetime) -> int:
        notice = starts_at - now
        for tier in self.tiers:
            if notice > tier.notice:
                return tier.percent
        return 0

    def refund_amount(self, captured: int, starts_at: datetime, now: datetime) -> int:
        """Rounded down to the minor unit, so a refund never exceeds the policy."""
        return captured * self.percent_at(starts_at, now) // 100


def cancel_refund_total(
    choice: RefundChoice, captured: int, policy: RefundPolicy, starts_at: datetime, requested_at: datetime
) -> int:
    """What a cancel of a confirmed booking gives back in total: by the policy (counted from when
    the cancel was asked for, not when it runs), everything captured, or nothing."""
    if choice is RefundChoice.FULL:
        return captured
    if choice is RefundChoice.NONE:
        return 0
    return policy.refund_amount(captured, starts_at, requested_at)
