"""The catalog at stadium size: importing a 60,000-seat venue, reading its seat map, and the
general-admission race.

    python -m bench.catalog [--seats 60000] [--reads 50] [--requests 1000] [--capacity 10]

1. Import: one POST /v1/venues with every seat (the app in process: JSON parsing, validation,
   the idempotency fingerprint and one multi-row INSERT in one transaction), the same layout
   through `bookings catalog import`'s path, and beside both a plain COPY of the same rows.
2. Seat map: GET /v1/events/{id}/seats of an event at that venue with 5% of the seats held,
   `--reads` times: p50 and p99 in milliseconds and the API thread's CPU time (the in-process
   app's; PostgreSQL's is its own), beside the statement alone (which writes the JSON).
3. General admission: `--requests` bookings for the last `--capacity` places, placed by 32
   threads at once (each its own unit of work, as workers do): the time, and exactly
   `--capacity` held.
"""

from __future__ import annotations

import argparse
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import falcon.testing
import psycopg
import redis

from bench.environment import bench_environment, print_table
from bench.stack import percentile


def _layout(seats: int) -> list[dict[str, Any]]:
    per_section = 5000
    return [{"section": f"S{n // per_section}", "row": str((n % per_section) // 50), "number": n % 50,
             "tier": "standard" if n % 3 else "premium"} for n in range(seats)]


def _context(database_url: str, redis_url: str) -> Any:
    from config.settings import Settings
    from db.engine import make_engine, make_sessions
    from services.context import Context

    settings = Settings(database_url=database_url, redis_url=redis_url, rate_limits="writes=1000000/second;"
                        "reads=1000000/second;webhooks=1000000/second")
    sessions = make_sessions(make_engine(database_url, pool_size=40))
    return Context(settings, sessions, dispatch=lambda messages: None)


def _operator(ctx: Any) -> str:
    from db.engine import transaction
    from db.queries.clients import create_client

    with transaction(ctx.sessions) as session:
        return create_client(session, f"bench-operator-{uuid.uuid4().hex[:6]}", operator=True)[1]


def measure_import(app: falcon.testing.TestClient, key: str, ctx: Any, database_url: str, seats: int) -> dict[str, Any]:
    from services.catalog_import import import_catalog, parse_document

    layout = _layout(seats)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    started = time.perf_counter()
    answer = app.simulate_post("/v1/venues", json={"name": "Stadium", "timezone": "Europe/Berlin", "seats": layout},
                               headers=headers)
    api_seconds = time.perf_counter() - started
    assert answer.status_code == 201 and answer.json["seat_count"] == seats, answer.text[:300]
    document = {"venues": [{"ref": f"stadium-{uuid.uuid4().hex[:6]}", "name": "Stadium 2", "timezone": "UTC",
                            "seats": layout}]}
    started = time.perf_counter()
    import_catalog(ctx.sessions, parse_document(document), now=datetime.now(UTC))
    import_seconds = time.perf_counter() - started
    return {"venue_id": answer.json["id"], "api": api_seconds, "import": import_seconds,
            "copy": _plain_copy(database_url, layout)}


def _plain_copy(database_url: str, layout: list[dict[str, Any]]) -> float:
    """The same rows by COPY into a new venue: the floor for getting them into PostgreSQL."""
    venue_id = uuid.uuid4()
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO venues (id, name) VALUES (%s, 'Copied')", (venue_id,))
        started = time.perf_counter()
        with conn.cursor().copy("COPY seats (id, venue_id, section, row, number, tier) FROM STDIN") as copy:
            for seat in layout:
                copy.write_row((uuid.uuid4(), venue_id, seat["section"], seat["row"], seat["number"], seat["tier"]))
        conn.commit()
        return time.perf_counter() - started


def measure_seat_map(app: falcon.testing.TestClient, key: str, ctx: Any, venue_id: str, reads: int) -> dict[str, Any]:
    from db.queries import catalog

    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    starts = datetime.now(UTC) + timedelta(days=90)
    event = app.simulate_post("/v1/events", headers=headers, json={
        "name": "Final", "venue_id": venue_id, "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=3)).isoformat(), "currency": "EUR",
        "prices": {"standard": 5000, "premium": 9000},
    }).json
    _hold_some(ctx.sessions, event["id"], venue_id, share=20)
    timings, cpu, statement = [], [], []
    for _ in range(reads):
        started, started_cpu = time.perf_counter(), time.thread_time()
        answer = app.simulate_get(f"/v1/events/{event['id']}/seats", headers={"Authorization": f"Bearer {key}"})
        timings.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
        assert answer.status_code == 200
        with ctx.sessions() as session:
            view = catalog.get_event(session, uuid.UUID(event["id"]), now=datetime.now(UTC))
            started = time.perf_counter()
            catalog.seat_map_json(session, view, datetime.now(UTC))
            statement.append(time.perf_counter() - started)
    return {"summary": answer.json["summary"], "p50": percentile(timings, 50), "p99": percentile(timings, 99),
            "cpu_p50": percentile(cpu, 50), "sql_p50": percentile(statement, 50), "sql_p99": percentile(statement, 99)}


def _hold_some(sessions: Any, event_id: str, venue_id: str, share: int) -> None:
    """Every `share`-th seat held by a booking of its own (awaiting payment), as placements leave them."""
    from sqlalchemy import text

    with sessions.begin() as session:
        session.execute(text("""
            WITH client AS (SELECT id FROM clients LIMIT 1),
            chosen AS (SELECT id AS seat_id, gen_random_uuid() AS booking_id FROM seats
                       WHERE venue_id = :venue AND (number + row::int) % :share = 0),
            b AS (INSERT INTO bookings (id, client_id, status, event_id, total_amount, currency, payment_mode,
                                        capture_mode, customer_email, expires_at)
                  SELECT booking_id, client.id, 'awaiting_payment', :event, 5000, 'EUR', 'card', 'on_confirm',
                         'bench@example.com', now() + interval '1 hour' FROM chosen, client),
            p AS (INSERT INTO payments (booking_id, provider, status, amount_authorized, amount_captured,
                                        amount_refunded, attempt) SELECT booking_id, 'stripe', 'none', 0, 0, 0, 1 FROM chosen)
            INSERT INTO booking_items (booking_id, event_id, seat_id, price, quantity, holds_inventory)
            SELECT booking_id, :event, seat_id, 5000, 1, true FROM chosen
        """), {"venue": venue_id, "event": event_id, "share": share})


def measure_general_admission(app: falcon.testing.TestClient, key: str, ctx: Any, requests: int, capacity: int) -> dict[str, Any]:
    from db.unit_of_work import UnitOfWork
    from services.placement import hold_inventory

    headers = {"Authorization": f"Bearer {key}"}
    starts = datetime.now(UTC) + timedelta(days=120)
    event = app.simulate_post("/v1/events", headers={**headers, "Idempotency-Key": uuid.uuid4().hex}, json={
        "name": "Open air", "capacity": capacity, "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=5)).isoformat(), "currency": "EUR", "prices": {"general": 2500},
    }).json
    body = {"event_id": event["id"], "quantity": 1, "customer": {"email": "fan@example.com"},
            "payment": {"mode": "card", "payment_method": "pm_card_visa"}}
    ids = [app.simulate_post("/v1/bookings", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}).json["id"]
           for _ in range(requests)]

    def place(booking_id: str) -> str:
        with UnitOfWork(ctx.sessions) as uow:
            locked = uow.lock(uuid.UUID(booking_id))
            hold_inventory(uow, locked, now=datetime.now(UTC), hold_ttl=timedelta(minutes=15))
            uow.commit()
            return locked.status.value

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(place, ids))
    seconds = time.perf_counter() - started
    shown = app.simulate_get(f"/v1/events/{event['id']}", headers=headers).json
    return {"seconds": seconds, "held": outcomes.count("awaiting_payment"), "rejected": outcomes.count("rejected"),
            "shown_held": shown["held"], "shown_available": shown["available"]}


def run(
    *, seats: int = 60_000, reads: int = 50, requests: int = 1000, capacity: int = 10, general_admission: bool = True
) -> dict[str, Any]:
    """Each table is printed as soon as its part is measured: a later part that fails (the
    general-admission race needs 32 connections at once) does not lose the earlier figures."""
    from api.app import create_app

    results: dict[str, Any] = {}
    with bench_environment() as env:
        ctx = _context(env.database_url, env.redis_url)
        client = redis.Redis.from_url(env.redis_url)
        app = falcon.testing.TestClient(create_app(ctx, redis_client=client))
        key = _operator(ctx)
        imported = results["import"] = measure_import(app, key, ctx, env.database_url, seats)
        print_table(f"Import of a {seats:,}-seat venue (seconds)", ["POST /v1/venues", "catalog import", "plain COPY"],
                    [[f"{imported['api']:.2f}", f"{imported['import']:.2f}", f"{imported['copy']:.2f}"]])
        seat_map = results["seat_map"] = measure_seat_map(app, key, ctx, imported["venue_id"], reads)
        print_table(f"Seat map of that venue ({reads} reads, ms; {seat_map['summary']})",
                    ["GET p50", "GET p99", "API CPU p50", "statement p50", "statement p99"],
                    [[f"{seat_map[k] * 1000:.0f}" for k in ("p50", "p99", "cpu_p50", "sql_p50", "sql_p99")]])
        if general_admission:
            general = results["general_admission"] = measure_general_admission(app, key, ctx, requests, capacity)
            print_table(f"General admission: {requests} placements for the last {capacity} places, 32 threads",
                        ["seconds", "held", "rejected", "event shows held", "event shows available"],
                        [[f"{general['seconds']:.2f}", general["held"], general["rejected"], general["shown_held"],
                          general["shown_available"]]])
            assert general["held"] == capacity == general["shown_held"], general
        client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seats", type=int, default=60_000)
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=10)
    parser.add_argument("--no-general-admission", action="store_true", help="measure the import and the seat map only")
    args = parser.parse_args()
    run(seats=args.seats, reads=args.reads, requests=args.requests, capacity=args.capacity,
        general_admission=not args.no_general_admission)


if __name__ == "__main__":
    main()
