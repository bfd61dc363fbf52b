"""Run every benchmark, print its table, and draw throughput and latency in one PNG chart.

    python -m bench.run_all            # the sizes of the issue (about 15 minutes on 2 cores)
    python -m bench.run_all --quick    # small sizes (a few minutes), to check that all of it works
    python -m bench.run_all --only pipeline hot_seat

Writes bench/results/bench-<time>.png (and latest.png) and the figures as JSON beside it, and
bench/results/latest.json: every target with its figure, baseline and ratio (bench.targets).
Every figure is a ratio to a baseline measured in the same run; the machine is shared and
noisy, so compare ratios, not absolute rates, across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import targets
from bench.stack import RESULTS

ALL = ["pipeline", "api_accept", "hot_seat", "expiry", "scale_out", "cpu_per_booking", "event_cancellation"]

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "pipeline": {"bookings": 2000, "clients": 32, "stripe_calls": 1000},
        "api_accept": {"duration": 10.0, "requests": 5000},
        "hot_seat": {"requests": 1000},
        "expiry": {"count": 10_000, "authorized": 100},
        "scale_out": {"bookings": 1000, "clients": 32, "processes": [1, 2, 4]},
        "cpu_per_booking": {"requests": 2000},
        # docs/performance.md has the 10,000-booking run (python -m bench.event_cancellation).
        "event_cancellation": {"bookings": 2000, "kills": 2},
    },
    "quick": {
        "pipeline": {"bookings": 300, "clients": 16, "stripe_calls": 200},
        "api_accept": {"duration": 3.0, "requests": 1000},
        "hot_seat": {"requests": 300},
        "expiry": {"count": 1000, "authorized": 10},
        "scale_out": {"bookings": 200, "clients": 16, "processes": [1, 2, 4]},
        "cpu_per_booking": {"requests": 300},
        "event_cancellation": {"bookings": 500, "kills": 1},
    },
}


def run_pipeline(size: dict[str, Any], log_level: str) -> dict[str, Any]:
    from bench import pipeline

    figures = pipeline.run(pipeline.Options(bookings=size["bookings"], clients=size["clients"],
                                            stripe_calls=size["stripe_calls"], log_level=log_level))
    pipeline.report(figures)
    return figures


def run_api_accept(size: dict[str, Any], log_level: str) -> dict[str, Any]:
    from bench import api_accept

    figures = api_accept.run(api_accept.Options(duration=size["duration"], requests=size["requests"],
                                                log_level=log_level))
    api_accept.report(figures)
    return figures


def run_hot_seat(size: dict[str, Any], log_level: str) -> dict[str, Any]:
    from bench import hot_seat

    figures = hot_seat.run(requests=size["requests"], log_level=log_level)
    hot_seat.report(figures)
    return figures


def run_scale_out(size: dict[str, Any], log_level: str) -> dict[str, Any]:
    from bench import scale_out

    figures = scale_out.run(processes=size["processes"], bookings=size["bookings"], clients=size["clients"],
                            log_level=log_level)
    scale_out.report(figures)
    return figures


def run_expiry(size: dict[str, Any], log_level: str) -> dict[str, Any]:
    """bench.expiry runs as it is (its own process); its table is printed and its seconds read."""
    done = subprocess.run([sys.executable, "-m", "bench.expiry", "--count", str(size["count"]),
                           "--authorized", str(size["authorized"])], check=False, capture_output=True, text=True,
                          timeout=1800)
    print(done.stdout)
    if done.returncode != 0:
        print(done.stderr[-3000:])
        raise RuntimeError("bench.expiry failed")
    seconds = {}
    for line in done.stdout.splitlines():
        match = re.match(r"(raw SQL, 3 set-based statements|expire_due_bookings(?:, no Stripe void)?)\s+"
                         r"([\d.]+)\s+([\d,]+)", line)
        if match:
            seconds[match.group(1)] = (float(match.group(2)), float(match.group(3).replace(",", "")))
    return {"count": size["count"], "rows": seconds, "output": done.stdout}


def run_cpu_per_booking(size: dict[str, Any], log_level: str) -> dict[str, Any]:
    from bench import cpu_per_booking
    from bench.environment import print_table

    measured = cpu_per_booking.measure(size["requests"])
    rows = cpu_per_booking.table(measured)
    print_table(f"CPU per call, one thread, {size['requests']} calls each", cpu_per_booking.HEADER, rows)
    return {"rows": rows, "figures": measured}


def run_event_cancellation(size: dict[str, Any], log_level: str) -> dict[str, Any]:
    from bench import event_cancellation

    figures = event_cancellation.run(event_cancellation.Options(bookings=size["bookings"], kills=size["kills"]))
    event_cancellation.report(figures)
    broken = event_cancellation.failures(figures)
    if broken:
        raise RuntimeError("; ".join(broken))
    return figures


RUNNERS = {"pipeline": run_pipeline, "api_accept": run_api_accept, "hot_seat": run_hot_seat,
           "expiry": run_expiry, "scale_out": run_scale_out, "cpu_per_booking": run_cpu_per_booking,
           "event_cancellation": run_event_cancellation}


def chart(figures: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    fig.suptitle(title, fontsize=11)

    # 1. Throughput: the pipeline beside pgbench (and the Stripe leg alone).
    ax = axes[0][0]
    if "pipeline" in figures:
        p = figures["pipeline"]
        labels = ["pgbench\n(same SQL)"] + [
            "pipeline\nStripe" if r["mode"] == "stripe" else "pipeline\npayment-free" for r in p["runs"]]
        values = [p["pgbench"]["tps"]] + [r["rate"] for r in p["runs"]]
        labels.append("Stripe leg\nalone")
        values.append(p["stripe_leg"]["rate"])
        bars = ax.bar(labels, values, color=["#888"] + ["#3b7dd8"] * len(p["runs"]) + ["#d8a03b"])
        _annotate(ax, bars, [f"{v:,.0f}" for v in values])
    if "hot_seat" in figures:
        h = figures["hot_seat"]
        ax.text(0.98, 0.95, f"hot seat: {h['requests']} settled in {h['seconds']:.2f} s "
                f"(pgbench {h['baseline_seconds']:.2f} s)", transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.set_title("Bookings/s, distinct seats (end to end)")
    ax.set_ylabel("bookings per second")

    # 2. API accept path vs the HTTP ceiling.
    ax = axes[0][1]
    if "api_accept" in figures:
        a = figures["api_accept"]["results"]
        labels = ["trivial", "enqueue only", "POST /v1/bookings"][: len(a)]
        bars = ax.bar(labels, [r["rate"] for r in a], color=["#888", "#aaa", "#3b7dd8"][: len(a)])
        _annotate(ax, bars, [f"{r['rate']:,.0f}/s\np99 {r['p99'] * 1000:.0f} ms" for r in a])
        ax.set_title(f"API accept path, {figures['api_accept']['options']['connections']} connections")
        ax.set_ylabel("requests per second")

    # 3. Latency p50 / p99 of everything that has one.
    ax = axes[1][0]
    names, p50, p99 = [], [], []
    for r in figures.get("pipeline", {}).get("runs", []):
        names.append("pipeline\n" + ("Stripe" if r["mode"] == "stripe" else "payment-free"))
        p50.append(r["p50"] * 1000)
        p99.append(r["p99"] * 1000)
    if "api_accept" in figures:
        r = figures["api_accept"]["results"][-1]
        names.append("POST\n/v1/bookings")
        p50.append(r["p50"] * 1000)
        p99.append(r["p99"] * 1000)
    if "hot_seat" in figures:
        names.append("hot seat")
        p50.append(figures["hot_seat"]["p50"] * 1000)
        p99.append(figures["hot_seat"]["p99"] * 1000)
    if names:
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], p50, width=0.4, label="p50", color="#3b7dd8")
        ax.bar([i + 0.2 for i in x], p99, width=0.4, label="p99", color="#d8573b")
        ax.set_xticks(list(x), names)
        ax.set_yscale("log")
        ax.legend()
    ax.set_title("Latency: request to settled (API: to the 202)")
    ax.set_ylabel("milliseconds (log)")

    # 4. Scale-out.
    ax = axes[1][1]
    if "scale_out" in figures:
        s = figures["scale_out"]
        for mode, colour in (("stripe", "#d8a03b"), ("none", "#3b7dd8")):
            runs = [r for r in s["runs"] if r.get("broker", "redis") == "redis"]  # the chart: Redis only
            points = [(r["processes"], r["rate"]) for r in runs if r["mode"] == mode]
            name = "Stripe" if mode == "stripe" else "payment-free"
            if points:
                ax.plot(*zip(*points), marker="o", color=colour, label=f"{name}, end to end")
            drained = [(r["processes"], r["drain_rate"]) for r in runs if r["mode"] == mode and "drain_rate" in r]
            if drained:
                ax.plot(*zip(*drained), marker="s", linestyle=":", color=colour, label=f"{name}, workers alone")
        ax.axhline(s["pgbench"], color="#888", linestyle="--", label="pgbench (same SQL)")
        ax.set_xticks(s["options"]["processes"])
        ax.legend()
    if "expiry" in figures and figures["expiry"]["rows"]:
        e = figures["expiry"]
        text = "; ".join(f"{k.split(',')[0]}: {v[0]:.2f} s" for k, v in e["rows"].items())
        ax.text(0.02, 0.02, f"expiry of {e['count']:,}: {text}", transform=ax.transAxes, fontsize=8)
    ax.set_title("Scale-out: worker processes (x 8 threads)")
    ax.set_xlabel("worker processes")
    ax.set_ylabel("bookings per second")

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _annotate(ax: Any, bars: Any, texts: list[str]) -> None:
    for bar, text in zip(bars, texts, strict=True):
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check that everything runs")
    parser.add_argument("--only", nargs="+", choices=ALL, default=ALL)
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the API and workers (production: INFO)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    figures: dict[str, Any] = {}
    load_at_start = list(os.getloadavg())
    started = time.monotonic()
    failed = []
    for name in args.only:
        print(f"\n=== {name} ({'quick' if args.quick else 'full'} sizes: {sizes[name]})", flush=True)
        try:
            figures[name] = RUNNERS[name](sizes[name], args.log_level)
        except Exception as error:  # noqa: BLE001 - one broken benchmark must not hide the others
            failed.append(name)
            print(f"!!! {name} failed: {type(error).__name__}: {error}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    title = (f"bookings benchmarks ({'quick' if args.quick else 'full'} sizes, {stamp}, "
             f"{_cores()} cores shared with everything else on the machine)")
    png = args.out / f"bench-{stamp}.png"
    chart(figures, png, title)
    (args.out / "latest.png").write_bytes(png.read_bytes())
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(figures, indent=1, default=str))
    found = targets.targets(figures)
    targets.report(found)
    summary = targets.summary(figures, sizes="quick" if args.quick else "full", stamp=stamp)
    summary["load_average_at_start"] = load_at_start
    (args.out / "latest.json").write_text(json.dumps(summary, indent=1))
    print(f"load average (1, 5, 15 min) at start {load_at_start}, at end {summary['load_average']}")
    print(f"\nchart: {png} (also {args.out / 'latest.png'}); figures: {png.with_suffix('.json')}; "
          f"{time.monotonic() - started:.0f} s in all")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


def _cores() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
