"""Servers and a throwaway database for a benchmark run (the same setup the test suite uses)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    from db.provision import create_database, drop_database, migrate_and_seed
    from devtools.local_services import start_localstripe, start_postgres, start_redis

    with ExitStack() as stack:
        admin_url = os.environ.get("DATABASE_URL") or stack.enter_context(
            start_postgres(LOCAL / "pg", max_connections=300)
        ).url
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(start_redis(LOCAL / "redis")).url
        stripe_url = stack.enter_context(start_localstripe(log_dir=LOCAL)).url
        url = create_database(admin_url, "bookings_bench")
        try:
            migrate_and_seed(url)
            yield BenchEnvironment(url, redis_url, stripe_url)
        finally:
            drop_database(admin_url, url)


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
