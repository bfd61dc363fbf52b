"""Test servers and isolation.

The suite talks to real servers: DATABASE_URL / REDIS_URL when set, otherwise an embedded
PostgreSQL and a local Redis started here (the same code `bookings dev` uses), and always a
local Stripe-compatible server. Each run creates its own database (dropped at the end) and
each test its own Redis key space (a broker namespace), so nothing it did not create is touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings as settings_profiles

# In CI, property tests draw the same examples every run: a red build then means a change broke
# something. Developers' runs stay random and keep exploring.
settings_profiles.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings_profiles.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local" / "test"

#: Where CI machines (and this project's development machines) run RabbitMQ.
LOCAL_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def rabbitmq_url() -> str | None:
    """BROKER_URL when it is an amqp:// URL, else the local RabbitMQ if something listens there;
    None on a machine without RabbitMQ, where the RabbitMQ variants of the tests skip."""
    configured = os.environ.get("BROKER_URL", "")
    url = configured if configured.startswith(("amqp://", "amqps://")) else LOCAL_RABBITMQ_URL
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=0.5).close()
    except OSError:
        return None
    return url


@pytest.fixture
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Which broker the test's settings use: a test parametrized over `broker_kind` (see
    tests.support.BOTH_BROKERS) runs on each; others on RabbitMQ when BROKER_URL says amqp://."""
    default = "rabbitmq" if os.environ.get("BROKER_URL", "").startswith("amqp") else "redis"
    return str(getattr(request, "param", default))


@dataclass(frozen=True)
class Servers:
    admin_database_url: str
    redis_url: str
    stripe_url: str


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    from devtools.local_services import start_localstripe, start_postgres, start_redis

    started = []
    # Each run its own server directory: two test runs at once (a developer's and a helper's)
    # must not stop each other's PostgreSQL.
    run_dir = LOCAL / f"run-{os.getpid()}"
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        postgres = start_postgres(run_dir / "pg", max_connections=300)
        started.append(postgres)
        database_url = postgres.url
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis_server = start_redis(run_dir / "redis")
        started.append(redis_server)
        redis_url = redis_server.url
    stripe = start_localstripe(log_dir=LOCAL)
    started.append(stripe)
    try:
        yield Servers(database_url, redis_url, stripe.url)
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> Iterator[str]:
    """A database of this run's own: migrated with Alembic, demo catalog seeded, dropped at the end."""
    from db.provision import create_database, drop_database, migrate_and_seed

    url = create_database(servers.admin_database_url, "bookings_test")
    try:
        migrate_and_seed(url)
        yield url
    finally:
        drop_database(servers.admin_database_url, url)


@pytest.fixture
def settings(servers: Servers, database_url: str, broker_kind: str):  # type: ignore[no-untyped-def]
    from config.settings import Settings

    broker_url = ""
    if broker_kind == "rabbitmq":
        broker_url = rabbitmq_url() or pytest.skip(f"RabbitMQ is not reachable at {LOCAL_RABBITMQ_URL} or BROKER_URL")
    return Settings(
        database_url=database_url,
        redis_url=servers.redis_url,
        broker_url=broker_url,
        stripe_api_key="sk_test_local",
        stripe_api_base=servers.stripe_url,
        stripe_webhook_secret="whsec_test_secret",
        broker_namespace=f"bookings-test-{uuid.uuid4().hex[:12]}",
        payment_step_lease=timedelta(seconds=3),
        db_pool_size=20,
        # The races fire hundreds of requests from one client at once; test_protection tests limits.
        rate_limits="writes=100000/second;reads=100000/second;webhooks=100000/second;anonymous=100000/second",
        # The races call Stripe hundreds of times at once; test_stripe_rate_limit tests the pacing.
        stripe_max_requests_per_second=0,
    )
