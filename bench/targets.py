"""The speed targets as figures: each with its baseline from the same run, the ratio, and whether it is met.

`bench.run_all` prints them and writes them to bench/results/latest.json, so that a later run can be
compared with this one without reading tables. A target reads "ratio <= 3" or "value < 2": the ratio
is value / baseline, both measured in the same run on the same machine.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.environment import print_table

COMPARE: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, "<=": operator.le, ">=": operator.ge}


@dataclass
class Target:
    name: str
    value: float
    unit: str
    baseline: float
    baseline_is: str
    on: str  # "ratio" or "value": which of the two the target bounds
    compare: str  # "<", "<=" or ">="
    limit: float

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    @property
    def met(self) -> bool:
        return COMPARE[self.compare](self.ratio if self.on == "ratio" else self.value, self.limit)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}

    def row(self) -> list[object]:
        return [self.name, f"{self.value:,.2f} {self.unit}", f"{self.baseline:,.2f} ({self.baseline_is})",
                f"{self.ratio:.2f}", f"{self.on} {self.compare} {self.limit:g}", "yes" if self.met else "NO"]


def accept_targets(figures: dict[str, Any]) -> list[Target]:
    """bench.api_accept: the API under gunicorn against the trivial route under the same settings."""
    trivial, api = figures["results"][0], figures["results"][-1]
    return [
        Target("accept: requests/s at 64 connections", api["rate"], "req/s", trivial["rate"], "trivial route",
               "ratio", ">=", 0.33),
        Target("accept: p99 latency", api["p99"] * 1000, "ms", trivial["p99"] * 1000, "trivial route p99",
               "value", "<", 60),
        Target("accept: API CPU per request, under gunicorn", _cpu_ms(api), "ms", _cpu_ms(trivial),
               "trivial route", "ratio", "<=", 3),
    ]


def _cpu_ms(result: dict[str, Any]) -> float:
    """The API processes' CPU per answered request: cores busy / requests per second."""
    return result["cpu"].get("api", float("nan")) / result["rate"] * 1000 if result["rate"] else float("nan")


def cpu_targets(figures: dict[str, Any]) -> list[Target]:
    """bench.cpu_per_booking: one thread, in process, so the machine's load barely moves it."""
    from bench.cpu_per_booking import accept_floor

    measured = figures["figures"]
    accept, trivial = measured["accept"][0], measured["trivial"][0]
    return [
        Target("accept: CPU per booking, in process", accept, "ms", trivial, "trivial request", "ratio", "<=", 3),
        Target("accept: CPU per booking against its floor", accept, "ms", accept_floor(measured),
               "trivial + 1 psycopg + 2 Redis round trips", "ratio", "<=", 1.5),
    ]


def pipeline_targets(figures: dict[str, Any]) -> list[Target]:
    pgbench = figures["pgbench"]
    targets = []
    for run in figures["runs"]:
        if run["mode"] == "none":
            targets += [
                Target("placement: CPU per settled booking, all processes", run["cpu_ms_per_booking"], "ms",
                       pgbench["cpu_ms_per_booking"], "pgbench + PostgreSQL, same statements", "ratio", "<=", 2),
                Target("placement: end-to-end rate, payment-free", run["rate"], "bookings/s", pgbench["tps"],
                       "pgbench TPS, same statements", "ratio", ">=", 0.5),
            ]
        else:
            targets.append(stripe_target(figures, run))
    return targets


def stripe_target(figures: dict[str, Any], run: dict[str, Any]) -> Target:
    """Settled bookings/s with the local Stripe server in the loop, >= 300/s, or the reason in the name:
    localstripe's share of the CPU a settled booking costs, beside ours.

    The baseline is the payment-free pipeline of the same run, when there is one: a Stripe-mode
    booking is that booking plus one Stripe call, on the same two cores, so it cannot be faster.
    The Stripe leg alone (the SDK and localstripe, nothing else running) is the baseline otherwise.
    """
    cpu_ms = run.get("cpu_ms") or {}
    ours = sum(v for k, v in cpu_ms.items() if k not in ("localstripe", "bench"))
    share = (f"CPU per booking: localstripe {cpu_ms.get('localstripe', 0):.2f} ms, ours {ours:.2f} ms"
             if cpu_ms else f"localstripe {run['cpu'].get('localstripe', 0):.2f} cores busy")
    free = next((r for r in figures["runs"] if r["mode"] == "none"), None)
    baseline, baseline_is = ((free["rate"], "payment-free pipeline, same run") if free
                             else (figures["stripe_leg"]["rate"], "Stripe leg alone, calls/s"))
    return Target(f"Stripe: settled bookings/s ({share})", run["rate"], "bookings/s", baseline, baseline_is,
                  "value", ">=", 300)


def hot_seat_targets(figures: dict[str, Any]) -> list[Target]:
    return [Target(f"hot seat: {figures['requests']} requests for one seat settled", figures["seconds"], "s",
                   figures["baseline_seconds"], "pgbench, the losers' transactions", "value", "<", 2)]


def expiry_targets(figures: dict[str, Any]) -> list[Target]:
    rows = figures["rows"]
    raw, sweep = rows.get("raw SQL, 3 set-based statements"), rows.get("expire_due_bookings, no Stripe void")
    if not raw or not sweep:
        return []
    # (seconds, bookings/s) each: the rates compared, over the same rows (none with a Stripe void).
    return [Target("expiry: sweep rate, no Stripe void", sweep[1], "bookings/s", raw[1], "raw SQL, same rows",
                   "ratio", ">=", 0.25)]


FROM = {"api_accept": accept_targets, "cpu_per_booking": cpu_targets, "pipeline": pipeline_targets,
        "hot_seat": hot_seat_targets, "expiry": expiry_targets}


def targets(figures: dict[str, Any]) -> list[Target]:
    return [target for name, build in FROM.items() if name in figures for target in build(figures[name])]


def summary(figures: dict[str, Any], *, sizes: str, stamp: str) -> dict[str, Any]:
    """What latest.json holds: the targets, and how loaded the shared machine was when they were measured."""
    return {"stamp": stamp, "sizes": sizes, "cores": os.cpu_count(), "load_average": list(os.getloadavg()),
            "targets": [target.as_json() for target in targets(figures)]}


def report(found: list[Target]) -> None:
    print_table("Targets: each figure beside its baseline from this run",
                ["figure", "value", "baseline", "ratio", "target", "met"], [t.row() for t in found])
