"""Servers and a throwaway database for a benchmark run (the same setup the test suite uses)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local" / "bench"


@dataclass(frozen=True)
class BenchEnvironment:
    database_url: str
    redis_url: str
    stripe_url: str


@contextmanager
def bench_environment() -> Iterator[BenchEnvironment]:
    """DATABASE_URL / REDIS_URL when set, else local servers; always a local Stripe server.

    The database is created for the run, migrated and seeded, and dropped at the end.
    """
    from cli.local_services import start_localstripe, start_postgres, start_redis
    from db.engine import make_engine, make_sessions, transaction
    from db.migrate import upgrade
    from db.seed import seed_demo

    with ExitStack() as stack:
        admin_url = os.environ.get("DATABASE_URL") or stack.enter_context(
            start_postgres(LOCAL / "pg", max_connections=300)
        ).url
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(start_redis(LOCAL / "redis")).url
        stripe_url = stack.enter_context(start_localstripe(log_dir=LOCAL)).url
        name = f"bookings_bench_{uuid.uuid4().hex[:10]}"
        conninfo = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        try:
            upgrade(url)
            engine = make_engine(url, pool_size=1)
            with transaction(make_sessions(engine)) as session:
                seed_demo(session)
            engine.dispose()
            yield BenchEnvironment(url, redis_url, stripe_url)
        finally:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
