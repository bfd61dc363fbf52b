"""CPU per accepted booking in process, interleaved with its baselines: for A/B runs on a loaded machine.

    python -m bench.accept_cpu [--requests 400] [--block 50] [--label A]

`bench.cpu_per_booking` measures each thing in turn, so a burst of load from elsewhere lands on one of
them. Here the accept path (`POST /v1/bookings` through the real app, falcon's TestClient), the trivial
request (`GET /healthz`), a psycopg `SELECT 1` and a Redis `PING` take turns in blocks of `--block`
calls, so all four meet the same load; CPU is `time.thread_time()` as there. To compare two versions of
the code, run it from each checkout back to back, several times, and compare medians:

    (cd ../a && python -m bench.accept_cpu --label A); (cd ../b && python -m bench.accept_cpu --label B)

Prints one JSON line: CPU ms per call of each, the accept path's ratio to the trivial request and to
its floor (`bench.cpu_per_booking.accept_floor`), and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable

from bench.cpu_per_booking import accept_floor
from bench.environment import bench_environment
from bench.stack import NO_RATE_LIMITS, add_arena, create_keys, seat_body


def measure(requests: int, block: int) -> dict[str, float]:
    saved = dict(os.environ)
    try:
        return _measure(requests, block)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _measure(requests: int, block: int) -> dict[str, float]:
    warm_up = 100
    with bench_environment() as env:
        arena = add_arena(env.database_url, seats=requests + warm_up, events=1)
        keys = create_keys(env.database_url, 4)
        os.environ.update(
            DATABASE_URL=env.database_url, REDIS_URL=env.redis_url, STRIPE_API_BASE=env.stripe_url,
            STRIPE_API_KEY="sk_test_bench", RATE_LIMITS=NO_RATE_LIMITS,
            BROKER_NAMESPACE=f"bench-cpu-{uuid.uuid4().hex[:8]}",
        )
        import falcon.testing
        import psycopg
        import redis

        from api.wsgi import create

        client = falcon.testing.TestClient(create())
        run_id = uuid.uuid4().hex[:8]

        def accept(i: int) -> None:
            answer = client.simulate_post(
                "/v1/bookings", json=seat_body(arena.event_ids[0], arena.seat(i)),
                headers={"Authorization": f"Bearer {keys[i % len(keys)]}", "Idempotency-Key": f"{run_id}-{i}"},
            )
            assert answer.status_code == 202, answer.text

        def trivial(i: int) -> None:
            assert client.simulate_get("/healthz").status_code == 200

        driver = psycopg.connect(env.database_url, autocommit=True)
        redis_client = redis.Redis.from_url(env.redis_url)
        turns: dict[str, Callable[[int], object]] = {
            "accept": accept, "trivial": trivial,
            "psycopg": lambda i: driver.execute("SELECT 1").fetchone(),
            "redis": lambda i: redis_client.ping(),
        }
        for i in range(warm_up):
            for call in turns.values():
                call(requests + i)
        spent = dict.fromkeys(turns, 0.0)
        for start in range(0, requests, block):
            for name, call in turns.items():
                began = time.thread_time()
                for i in range(start, min(start + block, requests)):
                    call(i)
                spent[name] += time.thread_time() - began
        driver.close()
        redis_client.close()
    return {name: cpu / requests * 1000 for name, cpu in spent.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--block", type=int, default=50)
    p.add_argument("--label", default="")
    args = p.parse_args()
    with contextlib.redirect_stdout(open(os.devnull, "w")):  # the app's access log
        per_call = measure(args.requests, args.block)
    floor = accept_floor({name: (cpu, 0.0) for name, cpu in per_call.items()})
    print(json.dumps({
        "label": args.label, "cpu_ms": per_call, "of_trivial": per_call["accept"] / per_call["trivial"],
        "floor_ms": floor, "of_floor": per_call["accept"] / floor, "load_average": os.getloadavg(),
    }))


if __name__ == "__main__":
    main()
