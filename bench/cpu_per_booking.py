"""CPU per booking in our own Python, one thread, no HTTP server and no other load: the figure that
says whether a change made the accept path or a worker step cheaper, on a machine too noisy for
throughput to tell.

    python -m bench.cpu_per_booking [--requests 2000]

Measured with `time.thread_time()` (this thread's CPU, user + system, so the syscalls of each
round trip count): the accept path through the real Falcon app in process (falcon's TestClient),
then the placement of each accepted booking by `advance_booking` with the instant gateway (the
payment-free mode). Beside them, in the same run: a trivial request through the same app
machinery, and the units everything else is made of: one `SELECT 1` round trip through
SQLAlchemy, the same through psycopg alone, and one Redis command through redis-py.

The last row is a floor, not a measurement: what the accept path would cost if it were nothing
but a trivial request plus the round trips it needs (the insert, which checks the remembered
catalog in the same statement; the rate limiter; the enqueue) with the drivers alone, no ORM,
validation, logging or metrics. Its ratio to the trivial request bounds what any Python implementation of this accept path can reach against the trivial route.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable

import psycopg
import redis

from bench.environment import bench_environment, print_table
from bench.stack import NO_RATE_LIMITS, add_arena, create_keys, seat_body


def cpu_per_call(fn: Callable[[int], object], count: int, warm_up: int = 100) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of `fn(i)` for i in range(count), after `warm_up` calls."""
    for i in range(warm_up):
        fn(count + i)
    cpu, wall = time.thread_time(), time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.thread_time() - cpu) / count * 1000, (time.perf_counter() - wall) / count * 1000


def run(requests: int) -> list[list[object]]:
    return table(measure(requests))


def measure(requests: int) -> dict[str, tuple[float, float]]:
    """(CPU ms, wall ms) per call of each thing measured, by name (see LABELS)."""
    # The app reads its settings from the environment; put it back after, for what runs next.
    saved = dict(os.environ)
    try:
        return _measure(requests)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _measure(requests: int) -> dict[str, tuple[float, float]]:
    with bench_environment() as env:
        arena = add_arena(env.database_url, seats=requests + 200, events=1)
        keys = create_keys(env.database_url, 4)
        os.environ.update(
            DATABASE_URL=env.database_url, REDIS_URL=env.redis_url, STRIPE_API_BASE=env.stripe_url,
            STRIPE_API_KEY="sk_test_bench", RATE_LIMITS=NO_RATE_LIMITS,
            BROKER_NAMESPACE=f"bench-cpu-{uuid.uuid4().hex[:8]}",
        )
        import falcon.testing
        from sqlalchemy import text

        from api.wsgi import create
        from bench.instant_gateway import InstantGateway, compose_worker
        from config.settings import Settings
        from services.advance import advance_booking

        client = falcon.testing.TestClient(create())
        run_id = uuid.uuid4().hex[:8]
        booked: list[uuid.UUID] = []

        def accept(i: int) -> None:
            answer = client.simulate_post(
                "/v1/bookings", json=seat_body(arena.event_ids[0], arena.seat(i)),
                headers={"Authorization": f"Bearer {keys[i % len(keys)]}", "Idempotency-Key": f"{run_id}-{i}"},
            )
            assert answer.status_code == 202, answer.text
            booked.append(uuid.UUID(answer.json["id"]))

        def trivial(i: int) -> None:
            assert client.simulate_get("/healthz").status_code == 200

        runtime = compose_worker(Settings.from_env(), InstantGateway())
        placed = iter(booked)

        def place(i: int) -> None:
            advance_booking(runtime.context, next(placed))

        def round_trip(i: int) -> None:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1")).one()

        driver = psycopg.connect(env.database_url, autocommit=True)
        redis_client = redis.Redis.from_url(env.redis_url)

        def driver_round_trip(i: int) -> None:
            driver.execute("SELECT 1").fetchone()

        def redis_round_trip(i: int) -> None:
            redis_client.ping()

        figures = {
            "trivial": cpu_per_call(trivial, requests),
            "sqlalchemy": cpu_per_call(round_trip, requests),
            "psycopg": cpu_per_call(driver_round_trip, requests),
            "redis": cpu_per_call(redis_round_trip, requests),
            "accept": cpu_per_call(accept, requests),
            "placement": cpu_per_call(place, requests),
        }
        driver.close()
        redis_client.close()
        runtime.broker.close()
    return figures


LABELS = {
    "trivial": "trivial request (GET /healthz), same app",
    "sqlalchemy": "one SELECT 1 round trip through SQLAlchemy",
    "psycopg": "one SELECT 1 round trip, psycopg alone",
    "redis": "one Redis PING, redis-py alone",
    "accept": "accept path (POST /v1/bookings)",
    "placement": "placement (advance_booking, payment-free)",
}


def table(figures: dict[str, tuple[float, float]]) -> list[list[object]]:
    """One row per figure with its multiple of the trivial request, then the accept path's floor."""
    trivial = figures["trivial"][0]
    rows: list[list[object]] = [
        [LABELS[name], f"{cpu:.2f}", f"{wall:.2f}", f"{cpu / trivial:.1f}x"] for name, (cpu, wall) in figures.items()
    ]
    floor = accept_floor(figures)
    rows.append([
        "floor of the accept path: trivial + 1 psycopg + 2 Redis round trips (sum)", f"{floor:.2f}", "-",
        f"{floor / trivial:.1f}x = {trivial / floor:.0%} of trivial at best",
    ])
    return rows


def accept_floor(figures: dict[str, tuple[float, float]]) -> float:
    """CPU ms of a trivial request plus the accept path's round trips through the drivers alone."""
    # One statement since seats are priced from the remembered catalog (services.seat_sales).
    return figures["trivial"][0] + figures["psycopg"][0] + 2 * figures["redis"][0]


HEADER = ["what", "CPU ms", "wall ms", "CPU of trivial"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    args = p.parse_args()
    rows = run(args.requests)
    print_table(f"CPU per call, one thread, {args.requests} calls each", HEADER, rows)


if __name__ == "__main__":
    main()
