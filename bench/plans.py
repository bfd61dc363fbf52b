"""The hot path's catalog statements at scale: PostgreSQL's plans, custom and generic, with
`EXPLAIN (ANALYZE, BUFFERS)`.

    python -m bench.plans [--seats 60000] [--held 50000] [--verbose]
    python -m bench.plans --search [--bookings 1000000] [--verbose]

A venue of `--seats` seats whose first event has `--held` seats held, one booking each (a
stadium selling out), analyzed; then, for a booking of one free seat, the three statements
whose plan depends on the tables' sizes: the accept path's priced-seat read, the placement's
seat lock (with its sold-out check) and its re-check of claims. Each is prepared as psycopg
prepares it after five runs, and explained twice: with a plan made for these values (custom)
and with the one plan PostgreSQL may keep for any values (generic). A plan that reads a
number of rows growing with the venue or the event shows as buffers (pages hit in the cache or
read) far above the handful an index lookup touches.

With `--search`, the operators' booking search instead: `--bookings` bookings spread over a thousand
clients, ten thousand customers' emails and three events, then one page (21 rows, newest first) of
each filter the API offers, which must read about a page's rows through its index, not the table.

The throughput benchmarks run on small tables (a few thousand rows), where PostgreSQL rightly
prefers sequential scans; this shows what the same statements do when the tables are large.
"""

from __future__ import annotations

import argparse
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from bench.environment import bench_environment, print_table
from bench.stack import add_arena
from db.driver import DriverStatement
from db.queries import catalog

STATEMENTS = {
    "priced seats (accept path)": catalog._PRICED_SEATS,
    "lock seats + sold-out check (placement)": catalog._LOCK_SEATS_OF,
    "seat map (GET /v1/events/{id}/seats)": catalog._SEAT_MAP,
}
TYPES = {"event_id": "uuid", "seat_ids": "uuid[]", "booking_id": "uuid", "venue_id": "uuid", "now": "timestamptz"}


def prepare_sql(name: str, statement: DriverStatement) -> tuple[str, list[str]]:
    """`PREPARE name(types) AS ...` of the statement as the driver sends it, and its parameter names."""
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", positional, statement.sql(PGDialect_psycopg()))
    return f"PREPARE {name}({', '.join(TYPES[n] for n in names)}) AS {sql}", names


def literal(value: Any) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(f"'{v}'" for v in value) + "]::uuid[]"
    return f"'{value}'::uuid"


def fill(conn: psycopg.Connection[Any], database_url: str, seats: int, held: int) -> dict[str, Any]:
    """The venue, `held` claimed seats of its first event, and one booking of a free seat."""
    arena = add_arena(database_url, seats=seats, events=3)
    event_id = arena.event_ids[0]
    client_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO clients (id, name, role, key_prefix, key_hash, created_at) VALUES (%s, 'plans', 'client', 'plans', %s, now())",
        (client_id, client_id.hex),
    )
    booking = (
        "INSERT INTO bookings (id, client_id, status, event_id, total_amount, currency, payment_mode,"
        " capture_mode, payment_method, customer_email, created_at, updated_at)"
        " SELECT gen_random_uuid(), %s, %s, %s, 5000, 'EUR', 'card', 'on_confirm', 'pm_card_visa',"
        " 'plans@example.com', now(), now() FROM generate_series(1, %s) RETURNING id"
    )
    held_ids = [row[0] for row in conn.execute(booking, (client_id, "authorized", event_id, held))]
    conn.execute(
        "INSERT INTO booking_items (booking_id, event_id, seat_id, price, holds_inventory)"
        " SELECT b, %s, s, 5000, true FROM unnest(%s::uuid[], ARRAY(SELECT id FROM seats WHERE venue_id = %s"
        " ORDER BY id LIMIT %s)) AS t(b, s)",
        (event_id, held_ids, arena.venue_id, held),
    )
    (mine,) = conn.execute(booking, (client_id, "requested", event_id, 1)).fetchone() or (None,)
    (free,) = conn.execute(
        "SELECT id FROM seats WHERE venue_id = %s ORDER BY id DESC LIMIT 1", (arena.venue_id,)
    ).fetchone() or (None,)
    conn.execute(
        "INSERT INTO booking_items (booking_id, event_id, seat_id, price, holds_inventory)"
        " VALUES (%s, %s, %s, 5000, false)", (mine, event_id, free),
    )
    conn.execute("ANALYZE")
    return {"event_id": event_id, "seat_ids": [free], "booking_id": mine, "venue_id": arena.venue_id,
            "now": datetime.now(UTC)}


def explain(conn: psycopg.Connection[Any], values: dict[str, Any], *, verbose: bool) -> list[list[object]]:
    rows: list[list[object]] = []
    for i, (label, statement) in enumerate(STATEMENTS.items()):
        prepare, names = prepare_sql(f"hot_{i}", statement)
        conn.execute(prepare)
        arguments = ", ".join(literal(values[n]) for n in names)
        for mode in ("custom", "generic"):
            conn.execute(f"SET plan_cache_mode = force_{mode}_plan")
            with conn.transaction(force_rollback=True):  # the seat lock takes its locks
                plan = [r[0] for r in conn.execute(
                    f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE hot_{i}({arguments})"
                )]
            text = "\n".join(plan)
            if verbose:
                print(f"\n== {label}, {mode} plan\n{text}")
            scans = sorted(set(re.findall(r"((?:Seq|Index Only|Index|Bitmap Heap) Scan)(?: using (\w+))? on (\w+)", text)))
            buffers = re.search(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?", text)
            execution = re.search(r"Execution Time: ([\d.]+) ms", text)
            rows.append([
                label, mode, "; ".join(f"{kind} {table}" + (f" ({index})" if index else "") for kind, index, table in scans),
                sum(int(n or 0) for n in buffers.groups()) if buffers else "-", execution.group(1) if execution else "-",
            ])
    return rows


def fill_bookings(conn: psycopg.Connection[Any], database_url: str, count: int) -> dict[str, Any]:
    """`count` bookings of a thousand clients, ten thousand emails and three events, analyzed."""
    arena = add_arena(database_url, seats=100, events=3)
    conn.execute(
        "INSERT INTO clients (id, name, role, key_prefix, key_hash, created_at)"
        " SELECT gen_random_uuid(), 'search-' || n, 'client', 'search', md5('search' || n), now()"
        " FROM generate_series(1, 1000) AS n"
    )
    conn.execute(
        "INSERT INTO bookings (id, client_id, status, event_id, total_amount, currency, payment_mode,"
        " capture_mode, customer_email, created_at, updated_at)"
        " SELECT gen_random_uuid(), c.ids[1 + n %% 1000], (ARRAY['confirmed','expired','refunded','rejected'])[1 + n %% 4],"
        " (%s::uuid[])[1 + n %% 3], 5000, 'EUR', 'card', 'on_confirm', 'customer' || (n %% 10000) || '@example.com',"
        " now() - make_interval(secs => n), now()"
        " FROM generate_series(1, %s) AS n, (SELECT array_agg(id) AS ids FROM clients WHERE name LIKE 'search-%%') AS c",
        (arena.event_ids, count),
    )
    conn.execute("ANALYZE bookings")
    (client_id,) = conn.execute("SELECT id FROM clients WHERE name = 'search-7'").fetchone() or (None,)
    return {"client_id": client_id, "event_id": arena.event_ids[1], "email": "customer77@example.com"}


def explain_search(conn: psycopg.Connection[Any], values: dict[str, Any], *, verbose: bool) -> list[list[object]]:
    from db.queries.bookings import BookingSearch, search_query

    searches = {
        "everything (newest first)": BookingSearch(client_id=None),
        "one client's": BookingSearch(client_id=values["client_id"]),
        "by customer email": BookingSearch(client_id=None, email=values["email"]),
        "by event": BookingSearch(client_id=None, event_id=values["event_id"]),
        "by event and status": BookingSearch(client_id=None, event_id=values["event_id"], status="refunded"),
    }
    rows: list[list[object]] = []
    for label, search in searches.items():
        sql = str(search_query(search, limit=21).compile(
            dialect=PGDialect_psycopg(), compile_kwargs={"literal_binds": True},
        ))
        text = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"))
        if verbose:
            print(f"\n== {label}\n{text}")
        rows.append([label, *_summary(text)])
    return rows


def _summary(plan: str) -> list[object]:
    scans = sorted(set(re.findall(r"((?:Seq|Index Only|Index|Bitmap Heap|Bitmap Index) Scan)(?: Backward)?(?: using (\w+))?(?: on (\w+))?", plan)))
    buffers = re.search(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?", plan)
    execution = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return [
        "; ".join(f"{kind} {table}" + (f" ({index})" if index else "") for kind, index, table in scans),
        sum(int(n or 0) for n in buffers.groups()) if buffers else "-", execution.group(1) if execution else "-",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=60_000)
    parser.add_argument("--held", type=int, default=50_000)
    parser.add_argument("--verbose", action="store_true", help="print every plan in full")
    parser.add_argument("--search", action="store_true", help="the operators' booking search instead")
    parser.add_argument("--bookings", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.search:
        with bench_environment() as env, psycopg.connect(env.database_url, autocommit=True) as conn:
            rows = explain_search(conn, fill_bookings(conn, env.database_url, args.bookings), verbose=args.verbose)
        print_table(f"Plans of the operators' booking search over {args.bookings:,} bookings (one page of 21)",
                    ["search", "scans", "buffers", "ms"], rows)
        return
    if not 0 <= args.held < args.seats:
        parser.error("--held must be below --seats: one seat stays free for the booking being placed")
    with bench_environment() as env, psycopg.connect(env.database_url, autocommit=True) as conn:
        values = fill(conn, env.database_url, args.seats, args.held)
        rows = explain(conn, values, verbose=args.verbose)
    print_table(
        f"Plans of the hot path's catalog statements: a venue of {args.seats:,} seats, {args.held:,} of them held",
        ["statement", "plan", "scans", "buffers", "ms"], rows,
    )


if __name__ == "__main__":
    main()
