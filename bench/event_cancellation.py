"""Cancel an event of thousands of bookings while its workers are SIGKILLed, and check the money.

    python -m bench.event_cancellation --bookings 10000 [--kills 3] [--stripe-rate 100]
    python -m bench.event_cancellation --quick          # 500 bookings, 1 kill

One event of `--bookings` seats, each booked: a mix of held (an authorized PaymentIntent, manual
capture) and confirmed (captured) bookings. Their PaymentIntents are real ones at the local
Stripe server, made through the SDK, and their rows are written in SQL: the placement pipeline
is measured by bench.pipeline, and it would take most of the run here. The rows are the ones a
placement leaves (booking, seat claim, payment, transitions).

Then, as in production: gunicorn, `dramatiq` workers and the scheduler (its outbox relay and
reconciliation); an operator's `POST /v1/events/{id}/cancel`; the workers' whole process group
SIGKILLed `--kills` times during the fan-out and restarted at once. At the end, checked against
Stripe (each intent read back): every held booking cancelled and its authorization voided, every
confirmed one refunded in full by exactly one refund, our books equal to Stripe's to the cent,
and `cancellation.done + failed == bookings`. Printed: the fan-out's seconds and bookings/s.

The workers pace their Stripe requests (STRIPE_MAX_REQUESTS_PER_SECOND, `--stripe-rate`): a
confirmed booking costs two requests (the refund, then reading the total back), a held one one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from bench.environment import bench_environment, print_table
from bench.stack import Arena, Stack, add_arena
from devtools.local_services import spawn, terminate

#: A held booking costs one Stripe request (the void), a confirmed one two (refund, read back).
HELD_SHARE = 0.5


@dataclass(frozen=True)
class Options:
    bookings: int = 10_000
    kills: int = 3
    processes: int = 2
    threads: int = 8
    stripe_rate: int = 100
    timeout: float = 1800.0


def run(options: Options) -> dict[str, Any]:
    load_before = os.getloadavg()
    with bench_environment() as env:
        arena = add_arena(env.database_url, seats=options.bookings, events=1)
        stack = Stack(env, log_level="WARNING", extra_env={
            "STRIPE_MAX_REQUESTS_PER_SECOND": str(options.stripe_rate),
            # A killed worker's messages come back within seconds, its claims after the lease.
            "BROKER_HEARTBEAT_TIMEOUT_MS": "3000", "BROKER_MAINTENANCE_CHANCE": "200000",
            # The scheduler relays what a kill left in the outbox, and reconciles stuck bookings.
            "OUTBOX_RELAY_AFTER_SECONDS": "15", "RECONCILE_AFTER_SECONDS": "30", "SCHEDULE_RECONCILE_SECONDS": "10",
            "SCHEDULE_RELAY_SECONDS": "3",
        })
        with stack:
            stripe_url = stack.fresh_stripe()
            started = time.monotonic()
            made = make_bookings(env.database_url, stripe_url, arena, options.bookings)
            print(f"{options.bookings:,} bookings with their intents made in {time.monotonic() - started:.1f} s",
                  flush=True)
            operator_key = _client(env.database_url, "bench-box-office", operator=True)[1]
            stack.start_web()
            stack.start_workers(options.processes, options.threads, "stripe", keep_stripe=True)
            scheduler = spawn([sys.executable, "-m", "cli.main", "scheduler"], log=stack.root / "scheduler.log",
                              env=stack.environ())
            try:
                served_before = _stripe_served(stripe_url)
                fan_out = cancel_and_kill(stack, options, arena.event_ids[0], operator_key, len(made))
                served = _stripe_served(stripe_url) - served_before
            finally:
                terminate(scheduler)
            checks = check(env.database_url, stripe_url, made)
    figures = {
        "options": options.__dict__, "bookings": len(made), "held": sum(1 for m in made if m.held),
        **fan_out, "stripe requests": served, **checks,
        "load average before": [round(x, 2) for x in load_before],
        "load average after": [round(x, 2) for x in os.getloadavg()],
    }
    return figures


@dataclass(frozen=True)
class Made:
    booking_id: str
    intent_id: str
    held: bool
    amount: int


def make_bookings(database_url: str, stripe_url: str, arena: Arena, count: int) -> list[Made]:
    """`count` bookings of the event's seats, held and confirmed in turn, each with its
    PaymentIntent at Stripe (made through the SDK, several at a time) and its rows in SQL."""
    from adapters.stripe import make_stripe_client

    client = make_stripe_client("sk_test_bench", stripe_url)
    ids = [str(uuid.uuid4()) for _ in range(count)]

    def make(index: int) -> Made:
        held = index % round(1 / HELD_SHARE) == 0
        intent = client.v1.payment_intents.create(params={
            "amount": arena.price, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True,
            "capture_method": "manual" if held else "automatic", "metadata": {"booking_id": ids[index]},
        })
        return Made(ids[index], intent.id, held, arena.price)

    with ThreadPoolExecutor(max_workers=16) as pool:
        made = list(pool.map(make, range(count)))
    _write_rows(database_url, arena, made)
    return made


def _write_rows(database_url: str, arena: Arena, made: list[Made]) -> None:
    """The rows a placement leaves: the booking, its seat's claim, its payment, its transitions."""
    client_id = _client(database_url, "bench-buyer", operator=False)[0]
    now = datetime.now(UTC)
    event_id = arena.event_ids[0]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy("COPY bookings (id, client_id, status, event_id, total_amount, currency, payment_mode,"
                      " capture_mode, payment_method, customer_email, customer_name, expires_at, created_at,"
                      " updated_at) FROM STDIN") as copy:
            for m in made:
                copy.write_row((m.booking_id, client_id, "authorized" if m.held else "confirmed", event_id, m.amount,
                                "EUR", "card", "on_confirm" if m.held else "immediate", "pm_card_visa",
                                "ada@example.com", "Ada", now + timedelta(hours=2) if m.held else None, now, now))
        with cur.copy("COPY booking_items (booking_id, event_id, seat_id, price, quantity, holds_inventory)"
                      " FROM STDIN") as copy:
            for index, m in enumerate(made):
                copy.write_row((m.booking_id, event_id, arena.seat(index), m.amount, 1, True))
        with cur.copy("COPY payments (booking_id, provider, status, intent_id, amount_authorized, amount_captured,"
                      " amount_refunded, attempt, refund_requested, refund_number, authorized_at, updated_at)"
                      " FROM STDIN") as copy:
            for m in made:
                copy.write_row((m.booking_id, "stripe", "authorized" if m.held else "captured", m.intent_id,
                                m.amount, 0 if m.held else m.amount, 0, 1, 0, 0, now, now))
        with cur.copy("COPY booking_transitions (booking_id, from_status, to_status, at) FROM STDIN") as copy:
            for m in made:
                copy.write_row((m.booking_id, "requested", "awaiting_payment", now))
                copy.write_row((m.booking_id, "awaiting_payment", "authorized" if m.held else "confirmed", now))
        conn.execute("ANALYZE bookings; ANALYZE payments; ANALYZE booking_items")


def cancel_and_kill(stack: Stack, options: Options, event_id: uuid.UUID, operator_key: str, count: int) -> dict[str, Any]:
    """The operator's cancel, then the workers SIGKILLed (and restarted) as the fan-out passes
    even fractions of the bookings, until every booking is settled."""
    headers = {"Authorization": f"Bearer {operator_key}"}
    kill_at = [(k + 1) / (options.kills + 1) * count for k in range(options.kills)]
    kills: list[float] = []
    with httpx.Client(base_url=stack.base_url, trust_env=False, timeout=30, headers=headers) as http:
        started = time.monotonic()
        answer = http.post(f"/v1/events/{event_id}/cancel", headers={"Idempotency-Key": uuid.uuid4().hex})
        assert answer.status_code == 202, answer.text
        while True:
            progress = http.get(f"/v1/events/{event_id}").json()["cancellation"]
            if progress["done"] >= count or time.monotonic() - started > options.timeout:
                break
            if len(kills) < options.kills and progress["done"] >= kill_at[len(kills)]:
                stack.kill_workers()
                kills.append(round(time.monotonic() - started, 1))
                print(f"  workers SIGKILLed at {kills[-1]} s ({progress['done']:,} done)", flush=True)
                stack.start_workers(options.processes, options.threads, "stripe", keep_stripe=True)
            time.sleep(0.25)
        seconds = time.monotonic() - started
    return {"fan-out seconds": round(seconds, 1), "bookings/s": round(progress["done"] / seconds, 1),
            "workers SIGKILLed at (s)": kills, "cancellation": progress}


def check(database_url: str, stripe_url: str, made: list[Made]) -> dict[str, Any]:
    """Each booking against Stripe's record of its intent (read back, several at a time)."""
    from adapters.stripe import make_stripe_client

    client = make_stripe_client("sk_test_bench", stripe_url)
    with psycopg.connect(database_url) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT b.id::text, b.status, p.status, p.amount_captured, p.amount_refunded, p.step"
            " FROM bookings b JOIN payments p ON p.booking_id = b.id WHERE b.id = ANY(%s::uuid[])",
            ([m.booking_id for m in made],)).fetchall()}

    def stripe_record(m: Made) -> dict[str, Any]:
        return dict(client.v1.payment_intents.retrieve(m.intent_id, params={"expand": ["latest_charge"]}).to_dict())

    with ThreadPoolExecutor(max_workers=16) as pool:
        intents = list(pool.map(stripe_record, made))
    broken = {"held not cancelled and voided": 0, "confirmed not refunded in full once": 0,
              "duplicate refunds": 0, "books differ from Stripe": 0, "a step left pending": 0}
    for m, intent in zip(made, intents, strict=True):
        status, payment_status, captured, refunded, step = rows[m.booking_id]
        charge = intent.get("latest_charge") or {}
        refunds = (charge.get("refunds") or {}).get("data") or []
        stripe_captured = int(charge.get("amount") or 0) if intent["status"] == "succeeded" else 0
        if m.held and not (status == "cancelled" and payment_status == "canceled" and intent["status"] == "canceled"):
            broken["held not cancelled and voided"] += 1
        if not m.held and not (status == "refunded" and [r["amount"] for r in refunds] == [m.amount]):
            broken["confirmed not refunded in full once"] += 1
        broken["duplicate refunds"] += max(0, len(refunds) - 1)
        if (captured, refunded) != (stripe_captured, int(charge.get("amount_refunded") or 0)):
            broken["books differ from Stripe"] += 1
        broken["a step left pending"] += step is not None
    return broken


def failures(figures: dict[str, Any]) -> list[str]:
    """What went wrong: each broken count above zero, and a cancellation that does not add up."""
    found = [f"{name}: {figures[name]}" for name in CHECKS if figures.get(name)]
    progress = figures["cancellation"]
    if progress["done"] + progress["failed"] != progress["bookings"] or progress["bookings"] != figures["bookings"]:
        found.append(f"cancellation does not add up: {progress}")
    return found


CHECKS = ["held not cancelled and voided", "confirmed not refunded in full once", "duplicate refunds",
          "books differ from Stripe", "a step left pending"]


def _client(database_url: str, name: str, *, operator: bool) -> tuple[uuid.UUID, str]:
    from db.engine import make_engine, make_sessions, transaction
    from db.queries.clients import create_client

    engine = make_engine(database_url, pool_size=1)
    try:
        with transaction(make_sessions(engine)) as session:
            client, key = create_client(session, name, operator=operator)
            return client.id, key
    finally:
        engine.dispose()


def report(figures: dict[str, Any]) -> None:
    rows = [[name, figures[name]] for name in (
        "bookings", "held", "fan-out seconds", "bookings/s", "stripe requests", "workers SIGKILLed at (s)",
        "cancellation", *CHECKS, "load average before", "load average after")]
    print_table(f"Event cancellation of {figures['bookings']:,} bookings, workers "
                f"{figures['options']['processes']} x {figures['options']['threads']}, Stripe budget "
                f"{figures['options']['stripe_rate']}/s", ["figure", "value"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--stripe-rate", type=int, default=100, help="STRIPE_MAX_REQUESTS_PER_SECOND of the workers")
    parser.add_argument("--quick", action="store_true", help="500 bookings, 1 kill")
    args = parser.parse_args()
    options = Options(bookings=500 if args.quick else args.bookings, kills=1 if args.quick else args.kills,
                      processes=args.processes, threads=args.threads, stripe_rate=args.stripe_rate)
    figures = run(options)
    report(figures)
    broken = failures(figures)
    if broken:
        raise SystemExit("broken: " + "; ".join(broken))



def _stripe_served(stripe_url: str) -> int:
    """API requests the local Stripe server has answered (bar the 429s it was told to give)."""
    return int(httpx.get(f"{stripe_url}/_config/rate_limit", trust_env=False).json()["served"])


if __name__ == "__main__":
    main()
