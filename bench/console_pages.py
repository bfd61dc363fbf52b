"""The operators' console at scale: each page's answer time over 100,000 bookings and 10,000
dead letters (the pages must answer in under 300 ms).

    python -m bench.console_pages [--bookings 100000] [--dead 10000] [--runs 7]

Bookings come from `bench.plans.fill_bookings` (a thousand clients, ten thousand emails, three
events), each with a payment and its transitions, a third of them settled in the last hour,
and a webhook event each; dead letters are written to Redis in the broker's own layout with
their errors. Pages are requested in process (falcon's test client) with an operator key:
the figure is the app's own time, without network or gunicorn.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
import uuid
from typing import Any

import falcon.testing
import psycopg
import redis

from bench.environment import bench_environment, print_table
from bench.plans import fill_bookings

NAMESPACE = "bench-console"
PAGES = ("/ops/", "/ops/api/overview", "/ops/queues", "/ops/api/queues", "/ops/workers", "/ops/dead",
         "/ops/dead?error=CardError", "/ops/api/dead", "/ops/bookings", "/ops/bookings?q=customer77%40example.com",
         "/ops/bookings/{booking}", "/ops/events")


def add_history(conn: psycopg.Connection[Any]) -> str:
    """A payment, transitions and a webhook event for every booking; returns one booking's id."""
    conn.execute(
        "INSERT INTO payments (booking_id, provider, status, intent_id, amount_authorized, amount_captured, amount_refunded, attempt,"
        " updated_at) SELECT id, 'stripe', 'captured', 'pi_' || replace(id::text, '-', ''), 5000, 5000, 0, 1, now()"
        " FROM bookings")
    conn.execute(
        "INSERT INTO booking_transitions (booking_id, from_status, to_status, at)"
        " SELECT id, NULL, 'requested', created_at FROM bookings UNION ALL"
        " SELECT id, 'requested', 'authorized', created_at + interval '1.5 seconds' FROM bookings")
    conn.execute(
        "INSERT INTO webhook_events (id, type, payload, received_at, processed_at, booking_id, outcome)"
        " SELECT 'evt_' || replace(id::text, '-', ''), 'payment_intent.succeeded', '{}', created_at, created_at, id,"
        " (ARRAY['applied','ignored','applied','unmatched'])[1 + (extract(epoch FROM created_at)::bigint % 4)]"
        " FROM bookings")
    conn.execute("ANALYZE")
    (booking,) = conn.execute("SELECT id FROM bookings ORDER BY created_at DESC LIMIT 1").fetchone() or (None,)
    return str(booking)


def add_dead_letters(client: redis.Redis, count: int) -> None:
    now_ms = int(time.time() * 1000)
    with client.pipeline(transaction=False) as pipe:
        for n in range(count):
            queue = ("bookings", "payments", "webhooks")[n % 3]
            message_id = str(uuid.uuid4())
            body = {"queue_name": queue, "actor_name": "capture_payment", "args": [str(uuid.uuid4())],
                    "kwargs": {}, "options": {"retries": 20, "request_id": f"req-{n}"},
                    "message_id": message_id, "message_timestamp": now_ms - n * 1000}
            pipe.zadd(f"{NAMESPACE}:{queue}.XQ", {message_id: now_ms - n * 1000})
            pipe.hset(f"{NAMESPACE}:{queue}.XQ.msgs", message_id, json.dumps(body))
            error = "CardError: card declined" if n % 10 == 0 else "ConnectionError: Stripe did not answer"
            pipe.hset(f"{NAMESPACE}:__dead_reasons__", message_id, f"{error}\nTraceback (most recent call last):\n ...")
            if n % 1000 == 999:
                pipe.execute()
        pipe.execute()


def time_pages(env: Any, booking: str, runs: int) -> list[list[object]]:
    from api.app import create_app
    from config.settings import Settings
    from db.engine import make_engine, make_sessions, transaction
    from db.queries.clients import create_client
    from services.context import Context

    settings = Settings.from_env({"DATABASE_URL": env.database_url, "REDIS_URL": env.redis_url,
                                  "BROKER_NAMESPACE": NAMESPACE})
    sessions = make_sessions(make_engine(env.database_url, pool_size=2))
    with transaction(sessions) as session:
        key = create_client(session, "bench-ops", operator=True)[1]
    client = redis.Redis.from_url(env.redis_url)
    app = falcon.testing.TestClient(create_app(Context(settings, sessions, lambda _: None), redis_client=client))
    headers = {"Authorization": "Basic " + base64.b64encode(f"ops:{key}".encode()).decode()}
    rows: list[list[object]] = []
    for page in PAGES:
        path = page.format(booking=booking)
        path, _, query = path.partition("?")
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            result = app.simulate_get(path, query_string=query, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            assert result.status_code == 200, (path, result.status_code, result.text[:200])
        rows.append([page, f"{statistics.median(times):.1f}", f"{max(times):.1f}", f"{len(result.content):,}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=100_000)
    parser.add_argument("--dead", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with bench_environment() as env:
        with psycopg.connect(env.database_url, autocommit=True) as conn:
            fill_bookings(conn, env.database_url, args.bookings)
            booking = add_history(conn)
        client = redis.Redis.from_url(env.redis_url)
        try:
            add_dead_letters(client, args.dead)
            rows = time_pages(env, booking, args.runs)
        finally:
            keys = list(client.scan_iter(f"{NAMESPACE}:*"))
            if keys:
                client.delete(*keys)
    print_table(f"Console pages over {args.bookings:,} bookings and {args.dead:,} dead letters ({args.runs} runs)",
                ["page", "median ms", "max ms", "bytes"], rows)


if __name__ == "__main__":
    main()
