"""The benchmarks' summary: each target's figure, its baseline from the same run, the ratio, met or not."""

from __future__ import annotations

import json

from bench.targets import summary, targets

API_ACCEPT = {"results": [
    {"label": "trivial", "rate": 5000.0, "p99": 0.020, "cpu": {"api": 1.0}},
    {"label": "enqueue", "rate": 3000.0, "p99": 0.030, "cpu": {"api": 1.0}},
    {"label": "api", "rate": 2000.0, "p99": 0.050, "cpu": {"api": 1.0}},
]}
PIPELINE = {
    "pgbench": {"tps": 600.0, "cpu_ms_per_booking": 3.0},
    "stripe_leg": {"rate": 700.0},
    "runs": [{"mode": "stripe", "rate": 310.0, "cpu": {"localstripe": 0.5},
              "cpu_ms": {"api": 2.0, "workers": 5.0, "postgresql": 3.0, "localstripe": 1.0, "bench": 1.5}},
             {"mode": "none", "rate": 200.0, "cpu_ms_per_booking": 9.0, "cpu": {}}],
}


def by_name(figures: dict[str, object]) -> dict[str, dict[str, object]]:
    return {t.name: t.as_json() for t in targets(figures)}


def test_the_accept_path_is_compared_with_the_trivial_route_of_the_same_run() -> None:
    found = by_name({"api_accept": API_ACCEPT})
    rate = found["accept: requests/s at 64 connections"]
    assert (rate["value"], rate["baseline"], rate["ratio"], rate["met"]) == (2000.0, 5000.0, 0.4, True)
    cpu = found["accept: API CPU per request, under gunicorn"]
    assert (round(cpu["value"], 3), round(cpu["baseline"], 3), round(cpu["ratio"], 2)) == (0.5, 0.2, 2.5)
    assert found["accept: p99 latency"]["met"] is True  # 50 ms, bounded by value (< 60 ms), not ratio


def test_placement_is_compared_with_pgbench_and_a_miss_says_so() -> None:
    found = by_name({"pipeline": PIPELINE})
    cpu = found["placement: CPU per settled booking, all processes"]
    assert (cpu["ratio"], cpu["met"]) == (3.0, False)
    assert found["placement: end-to-end rate, payment-free"]["met"] is False  # 1/3 of pgbench
    stripe = next(v for k, v in found.items() if k.startswith("Stripe"))
    assert stripe["met"] is True


def test_the_stripe_rate_shows_localstripes_cpu_beside_ours_against_the_payment_free_run() -> None:
    stripe = next(v for k, v in by_name({"pipeline": PIPELINE}).items() if k.startswith("Stripe"))
    # Ours: API, workers and PostgreSQL; the load generator is neither.
    assert "localstripe 1.00 ms, ours 10.00 ms" in str(stripe["name"])
    assert (stripe["baseline"], stripe["baseline_is"]) == (200.0, "payment-free pipeline, same run")


def test_without_a_payment_free_run_the_stripe_leg_is_the_baseline() -> None:
    alone = {**PIPELINE, "runs": [PIPELINE["runs"][0]]}  # type: ignore[index]
    stripe = next(v for k, v in by_name({"pipeline": alone}).items() if k.startswith("Stripe"))
    assert (stripe["baseline"], stripe["baseline_is"]) == (700.0, "Stripe leg alone, calls/s")


def test_the_summary_is_plain_json_with_the_machines_load() -> None:
    written = json.loads(json.dumps(summary({"api_accept": API_ACCEPT, "pipeline": PIPELINE},
                                            sizes="quick", stamp="20261206-000000")))
    assert len(written["load_average"]) == 3
    assert {t["name"] for t in written["targets"]} >= {"accept: p99 latency", "placement: end-to-end rate, payment-free"}
    assert all({"value", "baseline", "ratio", "met"} <= set(t) for t in written["targets"])
