"""Expiry sweep: N held bookings expired, beside the same work done as one raw SQL transaction.

    python -m bench.expiry [--count 10000] [--authorized 100] [--batch-size 500]

The baseline is the physical floor of the same database work: free the claims, mark the
bookings expired and write their history in three set-based statements, one transaction.
The sweep runs twice: over the same rows as the baseline (no card authorization, so no Stripe
void: the figure the target compares), then with `--authorized` of them authorized, its time
including their Stripe voids (round trips to the local server, eight at a time).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, text

from adapters.stripe import make_stripe_client
from bench.environment import bench_environment, print_table
from config.settings import Settings
from services.expiry import expire_due_bookings
from tasks.runtime import build_worker
from testkit.held_bookings import make_held_bookings

BASELINE = [
    "UPDATE booking_items SET holds_inventory = false WHERE booking_id IN"
    " (SELECT id FROM bookings WHERE status IN ('awaiting_payment', 'authorized') AND expires_at <= now())",
    "INSERT INTO booking_transitions (booking_id, from_status, to_status, reason, at)"
    " SELECT id, status, 'expired', 'hold_expired', now() FROM bookings"
    " WHERE status IN ('awaiting_payment', 'authorized') AND expires_at <= now()",
    "UPDATE bookings SET status = 'expired', reason = 'hold_expired', updated_at = now()"
    " WHERE status IN ('awaiting_payment', 'authorized') AND expires_at <= now()",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--authorized", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    with bench_environment() as env:
        settings = Settings(database_url=env.database_url, redis_url=env.redis_url,
                            stripe_api_base=env.stripe_url, broker_namespace="bench-expiry")
        runtime = build_worker(settings)
        stripe = make_stripe_client(settings.stripe_api_key, env.stripe_url)
        past = datetime.now(UTC) - timedelta(minutes=5)

        make_held_bookings(runtime.context.sessions, count=args.count, authorized=0, stripe_client=None, expired_at=past)
        started = time.perf_counter()
        with runtime.engine.begin() as conn:
            for statement in BASELINE:
                conn.execute(text(statement))
        baseline = time.perf_counter() - started

        statements, commits = [0], [0]
        event.listen(runtime.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
        event.listen(runtime.engine, "commit", lambda *a: commits.__setitem__(0, commits[0] + 1))
        rows = [["raw SQL, 3 set-based statements", f"{baseline:.2f}", f"{args.count / baseline:,.0f}", 3,
                 f"{3 / args.count:.4f}", 1, 0]]
        ratio = 0.0
        for label, authorized in [("expire_due_bookings, no Stripe void", 0), ("expire_due_bookings", args.authorized)]:
            with runtime.engine.begin() as conn:
                conn.execute(text("TRUNCATE bookings, booking_items, booking_transitions, payments CASCADE"))
            make_held_bookings(runtime.context.sessions, count=args.count, authorized=authorized,
                               stripe_client=stripe if authorized else None, expired_at=past)
            statements[0] = commits[0] = 0
            started = time.perf_counter()
            report = expire_due_bookings(runtime.context, batch_size=args.batch_size)
            elapsed = time.perf_counter() - started
            ratio = ratio or baseline / elapsed
            rows.append([label, f"{elapsed:.2f}", f"{report.expired / elapsed:,.0f}", statements[0],
                         f"{statements[0] / report.expired:.4f}", commits[0], report.voided])
        runtime.engine.dispose()

    print_table(
        f"Expiry sweep: {args.count} held bookings (then {args.authorized} of them with a card authorization)",
        ["what", "seconds", "bookings/s", "statements", "statements/booking", "transactions", "Stripe voids"], rows,
    )
    print(f"\nratio (raw SQL time / sweep time, no Stripe void): {ratio:.0%}")


if __name__ == "__main__":
    main()
