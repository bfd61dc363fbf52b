"""Pipeline throughput: bookings/s from POST /v1/bookings to a settled status, distinct seats,
beside pgbench running the very SQL transactions one booking costs, at the same concurrency.

    python -m bench.pipeline [--bookings 2000] [--clients 32] [--workers 2] [--threads 8]
                             [--payments both|stripe|none] [--stripe-calls 1000]

The stack is started as the Procfile does: gunicorn (2 gevent workers) and `dramatiq` with N
processes x T threads; no scheduler. C clients each POST a booking for a seat nobody else wants
and send the next as soon as the 202 is in (a closed loop on the API, an open one on the
workers). A booking counts when its status is settled (here: `authorized`); its time is that
of its settling transition, written by the worker. Throughput = bookings / (last settled - first
sent). Latency = settled - sent, per booking.

The pgbench script is captured from the code (bench.capture): the statements of every
transaction one booking makes, API and worker, with ids and seat drawn per booking. Its TPS is
bookings/s at the same concurrency: the physical limit of the same database work.

Modes: `stripe` runs `tasks.worker` against the local Stripe server; `none` runs
`bench.nopay_worker`: the same worker with an instant in-memory gateway (the same
transactions, no HTTP call). The Stripe leg is then measured on its own: PaymentIntent
create+confirm calls through the project's StripeGateway, at the workers' concurrency, with the
CPU each call costs in the SDK (ours) and in localstripe. Every Stripe-mode run and the Stripe
leg get an empty local Stripe server (see Stack.fresh_stripe).

Each run prints the CPU per settled booking of every process. The machine's two cores are shared
by all of them, so a Stripe-mode booking costs the payment-free one plus one Stripe call (SDK +
localstripe), and its rate follows: docs in bench/results/2026-12-07-stripe-leg.md.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.capture import Captured, PgbenchResult, capture_bookings, pgbench_script, run_pgbench
from bench.environment import BenchEnvironment, bench_environment, print_table
from bench.load import booking_request, run_requests
from bench.stack import (
    RESULTS,
    Arena,
    CpuMeter,
    Payments,
    Stack,
    add_arena,
    component_pids,
    create_keys,
    ms,
    pct,
    percentile,
    seat_body,
    server_pids,
    settled_times,
    wait_settled,
)


@dataclass
class PipelineRun:
    label: str
    bookings: int
    seconds: float  # first request sent -> last booking settled
    accept_seconds: float  # first request sent -> last 202 read
    latencies: list[float]  # request sent -> booking settled, seconds
    statuses: dict[str, int]
    failures: int  # answers other than 202
    cpu: dict[str, float] = field(default_factory=dict)  # cores busy per component
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # CPU seconds per component

    @property
    def rate(self) -> float:
        return self.bookings / self.seconds if self.seconds else 0.0

    def row(self, baseline: float | None) -> list[object]:
        return [self.label, self.bookings, f"{self.seconds:.2f}", f"{self.rate:,.0f}",
                ms(percentile(self.latencies, 50)), ms(percentile(self.latencies, 99)),
                pct(self.rate / baseline) if baseline else "-"]


HEADER = ["what", "bookings", "seconds", "bookings/s", "p50 ms", "p99 ms", "of pgbench"]


def drive(stack: Stack, arena: Arena, keys: list[str], *, event_index: int, first_seat: int, count: int,
          clients: int, label: str, timeout: float = 600) -> PipelineRun:
    """POST `count` bookings of distinct seats with `clients` connections; wait until settled."""
    event_id = arena.event_ids[event_index]
    run = uuid.uuid4().hex[:8]
    requests = [booking_request(keys[i % len(keys)], seat_body(event_id, arena.seat(first_seat + i)), f"{run}-{i}")
                for i in range(count)]
    meter = CpuMeter(component_pids(stack))
    meter.start()
    answers = run_requests(stack.base_url, requests, concurrency=clients)
    accepted = [a for a in answers if a.status == 202 and a.booking_id]
    settled_count = wait_settled(stack.env.database_url, [a.booking_id for a in accepted if a.booking_id],
                                 timeout=timeout)
    meter.stop()
    times = settled_times(stack.env.database_url, (a.booking_id for a in accepted if a.booking_id))
    if settled_count < len(accepted):
        print(f"  ! {label}: only {settled_count} of {len(accepted)} bookings settled within {timeout:.0f} s")
    first_sent = min(a.started for a in answers)
    last_settled = max((t for _, t in times.values()), default=first_sent)
    latencies = [times[a.booking_id][1] - a.started for a in accepted if a.booking_id in times]
    statuses: dict[str, int] = {}
    for status, _ in times.values():
        statuses[status] = statuses.get(status, 0) + 1
    return PipelineRun(label, len(times), last_settled - first_sent,
                       max(a.finished for a in answers) - first_sent, latencies, statuses,
                       sum(1 for a in answers if a.status != 202), meter.row(), meter.cpu_seconds())


def drain(stack: Stack, arena: Arena, keys: list[str], *, event_index: int, first_seat: int, count: int,
          clients: int, processes: int, threads: int, payments: Payments, timeout: float = 600) -> PipelineRun:
    """The workers alone: `count` bookings accepted while no worker runs, then drained by fresh workers.

    Throughput = bookings / (last settled - first settled): what the workers do when the API is
    not what limits them.
    """
    stack.stop_workers()
    event_id = arena.event_ids[event_index]
    run = uuid.uuid4().hex[:8]
    requests = [booking_request(keys[i % len(keys)], seat_body(event_id, arena.seat(first_seat + i)), f"{run}-{i}")
                for i in range(count)]
    answers = run_requests(stack.base_url, requests, concurrency=clients)
    ids = [a.booking_id for a in answers if a.status == 202 and a.booking_id]
    stack.start_workers(processes, threads, payments)
    meter = CpuMeter(component_pids(stack))
    meter.start()
    wait_settled(stack.env.database_url, ids, timeout=timeout)
    meter.stop()
    times = settled_times(stack.env.database_url, ids)
    settled_at = sorted(t for _, t in times.values())
    statuses: dict[str, int] = {}
    for status, _ in times.values():
        statuses[status] = statuses.get(status, 0) + 1
    seconds = settled_at[-1] - settled_at[0] if len(settled_at) > 1 else float("nan")
    return PipelineRun(f"workers alone ({payments})", len(times), seconds, seconds, [], statuses,
                       sum(1 for a in answers if a.status != 202), meter.row())


def warm_up(stack: Stack, arena: Arena, keys: list[str], *, event_index: int, first_seat: int, count: int) -> None:
    """Connections, pools and imports of every process, before anything is timed."""
    drive(stack, arena, keys, event_index=event_index, first_seat=first_seat, count=count,
          clients=min(count, 16), label="warm-up", timeout=120)


@dataclass
class StripeLeg:
    rate: float  # calls/s
    latencies: list[float]
    client_cpu_ms: float  # this process's CPU per call: the SDK and its HTTP client
    server_cpu_ms: float  # the local Stripe server's CPU per call


def stripe_leg(stack: Stack, *, calls: int, concurrency: int) -> StripeLeg:
    """PaymentIntent create+confirm (manual capture) through StripeGateway, on an empty local Stripe server.

    With the CPU each call costs, on our side (the SDK, in this process) and the server's: the
    Stripe mode's booking is the payment-free one plus one such call, on the same cores.
    """
    from adapters.stripe import StripeGateway, make_stripe_client

    stripe_url = stack.fresh_stripe()
    gateways = [StripeGateway(make_stripe_client("sk_test_bench", stripe_url), return_url="http://127.0.0.1/")
                for _ in range(concurrency)]

    def call(i: int) -> float:
        started = time.perf_counter()
        gateways[i % concurrency].authorize(
            booking_id=str(uuid.uuid4()), amount=5000, currency="EUR", payment_method="pm_card_visa",
            capture_immediately=False, idempotency_key=f"bench-leg-{uuid.uuid4().hex}")
        return time.perf_counter() - started

    for i in range(min(concurrency, calls)):  # connections and SDK set-up
        call(i)
    server = CpuMeter({"localstripe": component_pids(stack)["localstripe"]})
    server.start()
    client_before = time.process_time()  # every thread of this process; the servers it started are others
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(call, range(calls)))
    seconds = time.perf_counter() - started
    client = time.process_time() - client_before
    server.stop()
    return StripeLeg(calls / seconds, latencies, client / calls * 1000,
                     server.cpu_seconds()["localstripe"] / calls * 1000)


@dataclass
class Baseline:
    captured: Captured
    result: PgbenchResult
    clients: int
    cpu_seconds: float = float("nan")  # PostgreSQL and pgbench together, during the run

    @property
    def cpu_ms_per_booking(self) -> float:
        return self.cpu_seconds / self.result.transactions * 1000 if self.result.transactions else float("nan")

    def row(self, label: str = "pgbench, the same transactions") -> list[object]:
        return [label, self.result.transactions, f"{self.result.seconds:.2f}", f"{self.result.tps:,.0f}",
                f"{self.result.latency_ms:,.1f}", "-", "100%"]


def pgbench_baseline(env: BenchEnvironment, arena: Arena, captured: Captured, *, event_index: int, clients: int,
                     bookings: int, first_seat: int, name: str, base: int = 1) -> Baseline:
    """`base` (1, 2, ...) keeps the ids of several pgbench runs in one database apart.

    Its CPU is PostgreSQL's plus pgbench's own (a child of this process): the database work and the
    client issuing it, as the pipeline's figure is the database's plus our processes'.
    """
    script = pgbench_script(captured, env.database_url, event_id=str(arena.event_ids[event_index]))
    per_client = max(1, math.ceil(bookings / clients))
    meter = CpuMeter(server_pids(env))
    meter.start()
    result = run_pgbench(env.database_url, script, RESULTS / f"{name}.pgbench.sql", clients=clients,
                         transactions=per_client, base=base * 10**12, seat_base=first_seat)
    meter.stop()
    used = meter.cpu_seconds()
    return Baseline(captured, result, clients, used.get("postgresql", 0.0) + used.get("bench", 0.0))


def seats_needed(bookings: int, clients: int, warmup: int) -> int:
    return max(bookings, clients * math.ceil(bookings / clients)) + warmup + 10


@dataclass
class Options:
    bookings: int = 2000
    clients: int = 32
    workers: int = 2
    threads: int = 8
    payments: str = "both"
    stripe_calls: int = 1000
    log_level: str = "INFO"
    web_workers: int = 2  # the Procfile's default (WEB_CONCURRENCY)


def run(options: Options) -> dict[str, Any]:
    """Everything the table and the chart show, as plain figures."""
    modes: list[Payments] = ["stripe", "none"] if options.payments == "both" else [options.payments]  # type: ignore[list-item]
    warmup = options.workers * options.threads * 2
    figures: dict[str, Any] = {"options": options.__dict__, "runs": [], "statements": []}
    with bench_environment() as env:
        # Event 0: captures; then per mode one event for the pipeline and one for pgbench.
        arena = add_arena(env.database_url, seats=seats_needed(options.bookings, options.clients, warmup),
                          events=1 + 2 * len(modes))
        keys = create_keys(env.database_url, 4)
        rows: list[list[object]] = []
        with Stack(env, log_level=options.log_level, web_workers=options.web_workers) as stack:
            stack.start_web()
            baseline: Baseline | None = None
            for m, mode in enumerate(modes):
                held, _ = capture_bookings(env, arena, event_index=0, seat_index=2 * m, payments=mode)
                if baseline is None or _shape(held) != _shape(baseline.captured):
                    baseline = pgbench_baseline(env, arena, held, event_index=2 + 2 * m, clients=options.clients,
                                                bookings=options.bookings, first_seat=0, name=f"pipeline-{mode}",
                                                base=m + 1)
                    kind = "Stripe" if mode == "stripe" else "payment-free"
                    rows.append(baseline.row(f"pgbench, the same transactions ({kind} mode's)"))
                    figures["pgbench"] = {"tps": baseline.result.tps, "latency_ms": baseline.result.latency_ms,
                                          "cpu_ms_per_booking": baseline.cpu_ms_per_booking}
                    figures["statements"] = held.describe()
                    figures["round_trips"] = held.round_trips
                    figures["transactions"] = len(held.transactions)
                stack.start_workers(options.workers, options.threads, mode)
                warm_up(stack, arena, keys, event_index=1 + 2 * m, first_seat=options.bookings + 5, count=warmup)
                label = "pipeline, Stripe (localstripe)" if mode == "stripe" else "pipeline, payment-free"
                result = drive(stack, arena, keys, event_index=1 + 2 * m, first_seat=0, count=options.bookings,
                               clients=options.clients, label=label)
                rows.append(result.row(baseline.result.tps))
                figures["runs"].append({"mode": mode, "rate": result.rate, "seconds": result.seconds,
                                        "p50": percentile(result.latencies, 50), "p99": percentile(result.latencies, 99),
                                        "accept_rate": result.bookings / result.accept_seconds,
                                        "statuses": result.statuses, "failures": result.failures,
                                        "cpu": result.cpu, "ratio": result.rate / baseline.result.tps,
                                        "cpu_ms_per_booking": _served_cpu_ms(result),
                                        "cpu_ms": _cpu_ms_per_component(result)})
            stack.stop_workers()
            concurrency = options.workers * options.threads
            # On an empty local Stripe server, as each Stripe-mode run gets (see Stack.fresh_stripe).
            leg = stripe_leg(stack, calls=options.stripe_calls, concurrency=concurrency)
        rows.append([f"Stripe leg alone: PaymentIntent create+confirm, {concurrency} threads", options.stripe_calls,
                     f"{options.stripe_calls / leg.rate:.2f}", f"{leg.rate:,.0f}", ms(percentile(leg.latencies, 50)),
                     ms(percentile(leg.latencies, 99)), "-"])
        figures["stripe_leg"] = {"rate": leg.rate, "p50": percentile(leg.latencies, 50),
                                 "p99": percentile(leg.latencies, 99), "client_cpu_ms": leg.client_cpu_ms,
                                 "server_cpu_ms": leg.server_cpu_ms}
    figures["rows"] = rows
    return figures


def _served_cpu_ms(result: PipelineRun) -> float:
    """CPU per settled booking of everything that serves it (API, workers, PostgreSQL, Redis), not the load."""
    served = sum(v for k, v in result.cpu_seconds.items() if k not in ("bench", "machine"))
    return served / result.bookings * 1000 if result.bookings else float("nan")


def _cpu_ms_per_component(result: PipelineRun) -> dict[str, float]:
    """CPU per settled booking of each process measured, the load generator's included."""
    return {k: v / result.bookings * 1000 for k, v in result.cpu_seconds.items() if k != "machine"} \
        if result.bookings else {}


def _shape(captured: Captured) -> list[str]:
    return [statement for tx in captured.transactions for statement, _ in tx.statements]


def report(figures: dict[str, Any]) -> None:
    o = figures["options"]
    print_table(
        f"Pipeline: {o['bookings']} bookings of distinct seats, {o['clients']} clients, "
        f"{o['workers']} worker processes x {o['threads']} threads, gunicorn {o['web_workers']} gevent workers",
        HEADER, figures["rows"])
    print(f"\npgbench: the same {figures['transactions']} transactions per booking at {o['clients']} clients "
          f"(one script run = one booking); {figures['round_trips']} round trips per booking from the code "
          "(statements + BEGIN/COMMIT of each transaction not run in autocommit).")
    for run in figures["runs"]:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(run["statuses"].items()))
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in run["cpu"].items())
        print(f"  {run['mode']}: API accepted {run['accept_rate']:,.0f}/s; settled: {statuses}; "
              f"non-202 answers: {run['failures']}; cores busy (of 2): {cpu}")
        per_booking = ", ".join(f"{k} {v:.2f}" for k, v in run["cpu_ms"].items())
        print(f"    CPU ms per settled booking: {per_booking}; total {sum(run['cpu_ms'].values()):.2f}")
    leg = figures.get("stripe_leg")
    if leg:
        print(f"  Stripe leg alone: CPU ms per call: the SDK (client) {leg['client_cpu_ms']:.2f}, "
              f"localstripe {leg['server_cpu_ms']:.2f}")
        floor = figures["pgbench"]["cpu_ms_per_booking"] + leg["client_cpu_ms"] + leg["server_cpu_ms"]
        cores = os.cpu_count() or 1
        print(f"  Floor of a Stripe-mode booking: its SQL under pgbench ({figures['pgbench']['cpu_ms_per_booking']:.2f} "
              f"ms CPU, PostgreSQL + pgbench) + one Stripe call = {floor:.2f} ms: at most "
              f"{cores * 1000 / floor:,.0f} bookings/s on {cores} cores with nothing else running")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bookings", type=int, default=2000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="Dramatiq worker processes")
    p.add_argument("--threads", type=int, default=8, help="threads per worker process")
    p.add_argument("--payments", choices=["both", "stripe", "none"], default="both")
    p.add_argument("--stripe-calls", type=int, default=1000, help="PaymentIntents for the Stripe leg alone")
    p.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the API and workers (production: INFO)")
    p.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (the Procfile's default: 2)")
    p.add_argument("--show-statements", action="store_true", help="print the statements of one booking")
    return p


def main() -> None:
    args = parser().parse_args()
    figures = run(Options(args.bookings, args.clients, args.workers, args.threads, args.payments,
                          args.stripe_calls, args.log_level, args.web_workers))
    report(figures)
    if args.show_statements:
        print_table("Statements of one booking (in order)", ["tx", "process", "statement"], figures["statements"])


if __name__ == "__main__":
    main()
