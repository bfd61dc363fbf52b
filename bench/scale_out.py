"""Scale-out: pipeline throughput with 1, 2 and 4 Dramatiq worker processes, on Redis and on
RabbitMQ side by side, beside pgbench running the same transactions at the same client
concurrency; and where the CPU went in each run (API, workers, PostgreSQL, Redis, RabbitMQ,
localstripe), to show where the bottleneck moves.

    python -m bench.scale_out [--processes 1 2 4] [--threads 8] [--bookings 1000] [--clients 32]
                              [--payments both|stripe|none] [--brokers redis rabbitmq]

RabbitMQ is BROKER_URL when it is amqp://, else 127.0.0.1:5672; skipped when nothing listens.

Each run books fresh distinct seats of its own event (see bench.pipeline for how a booking is
timed). The machine has 2 cores shared by everything here, so read the CPU columns as much as
the rates.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

from bench.capture import capture_bookings
from bench.environment import bench_environment, print_table
from bench.pipeline import drain, drive, pgbench_baseline, seats_needed, warm_up
from bench.stack import Payments, Stack, add_arena, create_keys, ms, percentile

CPU_COLUMNS = ["api", "workers", "postgresql", "redis", "rabbitmq", "localstripe", "machine"]


def broker_environments(brokers: list[str]) -> dict[str, dict[str, str]]:
    """Each broker's extra environment; RabbitMQ left out (with a note) when nothing listens."""
    chosen: dict[str, dict[str, str]] = {}
    for broker in brokers:
        if broker == "redis":
            chosen[broker] = {"BROKER_URL": ""}
            continue
        configured = os.environ.get("BROKER_URL", "")
        url = configured if configured.startswith("amqp") else "amqp://guest:guest@127.0.0.1:5672/%2F"
        try:
            socket.create_connection(_host_port(url), 1).close()
        except OSError:
            print(f"RabbitMQ is not reachable at {url}: its rows are left out")
            continue
        chosen[broker] = {"BROKER_URL": url}
    return chosen


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def run(*, processes: list[int], threads: int = 8, bookings: int = 1000, clients: int = 32, payments: str = "both",
        log_level: str = "INFO", brokers: list[str] | None = None) -> dict[str, Any]:
    modes: list[Payments] = ["stripe", "none"] if payments == "both" else [payments]  # type: ignore[list-item]
    environments = broker_environments(brokers or ["redis", "rabbitmq"])
    warmup = max(processes) * threads * 2
    runs: list[dict[str, Any]] = []
    with bench_environment() as env:
        # Event 0: capture, 1: pgbench, then one per run.
        arena = add_arena(env.database_url, seats=seats_needed(bookings, clients, warmup),
                          events=2 + 2 * len(modes) * len(processes) * len(environments))
        keys = create_keys(env.database_url, 4)
        held, _ = capture_bookings(env, arena, event_index=0, seat_index=0, payments=modes[-1])
        baseline = pgbench_baseline(env, arena, held, event_index=1, clients=clients, bookings=bookings,
                                    first_seat=0, name="scale-out")
        event = 2
        for broker, extra_env in environments.items():
            with Stack(env, log_level=log_level, extra_env=extra_env) as stack:
                stack.start_web()
                for mode in modes:
                    for count in processes:
                        stack.start_workers(count, threads, mode)
                        warm_up(stack, arena, keys, event_index=event, first_seat=bookings + 5,
                                count=count * threads * 2)
                        result = drive(stack, arena, keys, event_index=event, first_seat=0, count=bookings,
                                       clients=clients, label=f"{broker} {mode} x{count}")
                        alone = drain(stack, arena, keys, event_index=event + 1, first_seat=0, count=bookings,
                                      clients=clients, processes=count, threads=threads, payments=mode)
                        event += 2
                        runs.append({
                            "broker": broker, "mode": mode, "processes": count, "rate": result.rate,
                            "p50": percentile(result.latencies, 50), "p99": percentile(result.latencies, 99),
                            "accept_rate": result.bookings / result.accept_seconds, "cpu": result.cpu,
                            "statuses": result.statuses, "ratio": result.rate / baseline.result.tps,
                            "drain_rate": alone.rate, "drain_cpu": alone.cpu, "drain_statuses": alone.statuses,
                            "drain_ratio": alone.rate / baseline.result.tps})
    rows = [[f"pgbench, the same transactions ({clients} clients)", "-", f"{baseline.result.tps:,.0f}", "-", "-", "-",
             "100%", *["-"] * len(CPU_COLUMNS)]]
    # Side by side: each configuration's Redis row, then its RabbitMQ row.
    for r in sorted(runs, key=lambda r: (modes.index(r["mode"]), r["processes"], r["broker"] != "redis")):
        kind = f"{'Stripe' if r['mode'] == 'stripe' else 'payment-free'}, {r['broker']}"
        rows.append([f"pipeline end to end, {kind}", f"{r['processes']} x {threads}",
                     f"{r['rate']:,.0f}", f"{r['accept_rate']:,.0f}", ms(r["p50"]), ms(r["p99"]), f"{r['ratio']:.0%}",
                     *[f"{r['cpu'].get(c, 0.0):.2f}" for c in CPU_COLUMNS]])
        rows.append([f"  workers alone (backlog drain), {kind}", f"{r['processes']} x {threads}",
                     f"{r['drain_rate']:,.0f}", "-", "-", "-", f"{r['drain_ratio']:.0%}",
                     *[f"{r['drain_cpu'].get(c, 0.0):.2f}" for c in CPU_COLUMNS]])
    return {"rows": rows, "runs": runs, "pgbench": baseline.result.tps,
            "options": {"processes": processes, "threads": threads, "bookings": bookings, "clients": clients}}


def report(figures: dict[str, Any]) -> None:
    o = figures["options"]
    print_table(f"Scale-out: {o['bookings']} bookings per run, {o['clients']} clients, gunicorn 2 gevent workers",
                ["what", "workers", "bookings/s", "API 202/s", "p50 ms", "p99 ms", "of pgbench",
                 *[f"{c} cores" for c in CPU_COLUMNS]], figures["rows"])
    print("\n'cores' = CPU seconds per second of the run, per component (the machine has 2; 'machine' counts "
          "every process on it, ours or not). 'workers alone': the same number of bookings accepted first with no "
          "worker running, then drained (first to last settled): the workers' own rate when the API does not "
          "limit them.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--bookings", type=int, default=1000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--payments", choices=["both", "stripe", "none"], default="both")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--brokers", nargs="+", choices=["redis", "rabbitmq"], default=["redis", "rabbitmq"])
    args = p.parse_args()
    report(run(processes=args.processes, threads=args.threads, bookings=args.bookings, clients=args.clients,
               payments=args.payments, log_level=args.log_level, brokers=args.brokers))


if __name__ == "__main__":
    main()
