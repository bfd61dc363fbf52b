"""CPU per booking in our own Python, one thread, no HTTP server and no other load: the figure that
says whether a change made the accept path or a worker step cheaper, on a machine too noisy for
throughput to tell.

    python -m bench.cpu_per_booking [--requests 2000]

Measured with `time.thread_time()` (this thread's CPU, user + system, so the syscalls of each
round trip count): the accept path through the real Falcon app in process (falcon's TestClient),
then the placement of each accepted booking by `advance_booking` with the instant gateway (the
payment-free mode). Beside them, in the same run: a trivial request through the same app
machinery, and one `SELECT 1` round trip through SQLAlchemy, the unit everything else is made of.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable

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

        figures = [
            ("trivial request (GET /healthz), same app", cpu_per_call(trivial, requests)),
            ("one SELECT 1 round trip through SQLAlchemy", cpu_per_call(round_trip, requests)),
            ("accept path (POST /v1/bookings)", cpu_per_call(accept, requests)),
            ("placement (advance_booking, payment-free)", cpu_per_call(place, requests)),
        ]
        runtime.broker.close()
    return [[label, f"{cpu:.2f}", f"{wall:.2f}"] for label, (cpu, wall) in figures]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    args = p.parse_args()
    rows = run(args.requests)
    print_table(f"CPU per call, one thread, {args.requests} calls each", ["what", "CPU ms", "wall ms"], rows)


if __name__ == "__main__":
    main()
