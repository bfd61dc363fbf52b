"""Hot seat: 1,000 concurrent requests for one seat. Time until all are settled, p50/p99 from
request to settled, and exactly one holder; beside pgbench running the same transactions
(those of a booking that loses the seat: the 999 are that) for the same seat, same count.

    python -m bench.hot_seat [--requests 1000] [--workers 2] [--threads 8] [--payments stripe|none]
                             [--pgbench-clients 50]

Every connection is opened before any request is written, so all requests are in flight at
once (gunicorn's listen backlog holds them). One booking must end `authorized`, every other
`rejected` (`unavailable`), and exactly one booking item may hold the seat.
"""

from __future__ import annotations

import argparse
import math
import uuid
from typing import Any

import psycopg

from bench.capture import capture_bookings, pgbench_script, run_pgbench
from bench.environment import bench_environment, print_table
from bench.load import booking_request, run_requests
from bench.pipeline import warm_up
from bench.stack import (
    RESULTS,
    CpuMeter,
    Stack,
    add_arena,
    component_pids,
    create_keys,
    ms,
    percentile,
    seat_body,
    settled_times,
    wait_settled,
)


def run(*, requests: int = 1000, workers: int = 2, threads: int = 8, payments: str = "stripe",
        pgbench_clients: int = 50, log_level: str = "INFO") -> dict[str, Any]:
    with bench_environment() as env:
        # Event 0: capture; 1: the hot seat; 2: pgbench's hot seat (already held, as after the winner).
        arena = add_arena(env.database_url, seats=max(200, workers * threads * 2 + 20), events=3)
        keys = create_keys(env.database_url, 4)
        hot = arena.seat(0)
        _, lost = capture_bookings(env, arena, event_index=0, seat_index=0, payments=payments)  # type: ignore[arg-type]
        with Stack(env, log_level=log_level) as stack:
            stack.start_web()
            stack.start_workers(workers, threads, payments)  # type: ignore[arg-type]
            warm_up(stack, arena, keys, event_index=2, first_seat=10, count=workers * threads * 2)
            event_id = arena.event_ids[1]
            run_id = uuid.uuid4().hex[:8]
            batch = [booking_request(keys[i % len(keys)], seat_body(event_id, hot), f"{run_id}-{i}")
                     for i in range(requests)]
            meter = CpuMeter(component_pids(stack))
            meter.start()
            answers = run_requests(stack.base_url, batch, concurrency=requests, connect_first=True)
            ids = [a.booking_id for a in answers if a.status == 202 and a.booking_id]
            settled = wait_settled(env.database_url, ids, timeout=300)
            meter.stop()
        times = settled_times(env.database_url, ids)
        first = min(a.started for a in answers)
        all_settled = max(t for _, t in times.values()) - first
        all_accepted = max(a.finished for a in answers) - first
        latencies = [times[a.booking_id][1] - a.started for a in answers if a.booking_id in times]
        statuses: dict[str, int] = {}
        for status, _ in times.values():
            statuses[status] = statuses.get(status, 0) + 1
        with psycopg.connect(env.database_url) as conn:
            holders = conn.execute(
                "SELECT count(*) FROM booking_items WHERE event_id = %s AND seat_id = %s AND holds_inventory",
                (event_id, hot)).fetchone()[0]
            reasons = dict(conn.execute(
                "SELECT coalesce(reason, '-'), count(*) FROM bookings WHERE id = ANY(%s::uuid[]) GROUP BY 1",
                (ids,)).fetchall())
            # pgbench's seat is held already, as it is for the 999 after the winner.
            conn.execute("INSERT INTO booking_items (booking_id, event_id, seat_id, price, holds_inventory)"
                         " SELECT id, %s, %s, 0, true FROM bookings WHERE id = %s",
                         (arena.event_ids[2], hot, ids[0] if ids else None))
        clients = min(pgbench_clients, requests)
        script = pgbench_script(lost, env.database_url, event_id=str(arena.event_ids[2]), seat_expr="0")
        baseline = run_pgbench(env.database_url, script, RESULTS / "hot-seat.pgbench.sql", clients=clients,
                               transactions=math.ceil(requests / clients), base=9)
    baseline_seconds = baseline.transactions / baseline.tps
    rows = [
        [f"pgbench: the losing booking's transactions, one seat, {clients} clients", baseline.transactions,
         f"{baseline_seconds:.2f}", f"{baseline.tps:,.0f}", f"{baseline.latency_ms:.1f}", "-", "100%"],
        [f"pipeline: {requests} concurrent requests for one seat", len(times), f"{all_settled:.2f}",
         f"{len(times) / all_settled:,.0f}", ms(percentile(latencies, 50)), ms(percentile(latencies, 99)),
         f"{baseline_seconds / all_settled:.0%}"],
    ]
    return {"rows": rows, "requests": requests, "answered_202": len(ids), "settled": settled, "statuses": statuses,
            "reasons": reasons, "holders": holders, "seconds": all_settled, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "baseline_seconds": baseline_seconds, "cpu": meter.row(),
            "accepted_seconds": all_accepted,
            "options": {"workers": workers, "threads": threads, "payments": payments}}


def report(figures: dict[str, Any]) -> None:
    o = figures["options"]
    print_table(f"Hot seat: {figures['requests']} concurrent requests for one seat, {o['workers']} worker processes"
                f" x {o['threads']} threads, payments: {o['payments']}",
                ["what", "bookings", "seconds", "bookings/s", "p50 ms", "p99 ms", "pgbench time / ours"],
                figures["rows"])
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(figures["statuses"].items()))
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(figures["reasons"].items()))
    print(f"\n202 answers: {figures['answered_202']} (the last {figures['accepted_seconds']:.2f} s after the first "
          f"request); settled: {statuses}; reasons: {reasons}")
    print("cores busy (of 2): " + ", ".join(f"{k} {v:.2f}" for k, v in figures["cpu"].items()))
    print(f"holders of the seat: {figures['holders']} (must be 1); target: all settled in < 5 s "
          f"({figures['seconds']:.2f} s)")


def check(figures: dict[str, Any]) -> None:
    problems = []
    if figures["holders"] != 1:
        problems.append(f"{figures['holders']} holders")
    if figures["statuses"].get("authorized", 0) + figures["statuses"].get("confirmed", 0) != 1:
        problems.append(f"statuses {figures['statuses']}")
    if figures["settled"] != figures["requests"]:
        problems.append(f"{figures['settled']} of {figures['requests']} settled")
    if problems:
        raise SystemExit("HOT SEAT BROKEN: " + "; ".join(problems))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--payments", choices=["stripe", "none"], default="stripe")
    p.add_argument("--pgbench-clients", type=int, default=50)
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args()
    figures = run(requests=args.requests, workers=args.workers, threads=args.threads, payments=args.payments,
                  pgbench_clients=args.pgbench_clients, log_level=args.log_level)
    report(figures)
    check(figures)


if __name__ == "__main__":
    main()
