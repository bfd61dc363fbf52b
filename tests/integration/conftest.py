"""Fixtures for tests against real PostgreSQL, Redis, Dramatiq workers and the local Stripe server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import falcon.testing
import pytest
import redis
from sqlalchemy import text

from testkit.faults import FaultProxy
from tests.integration.message_outcomes import MessageOutcomes
from tests.support import ApiClient

BOOKING_TABLES = (
    "bookings, booking_items, booking_transitions, payments, idempotency_keys, outbox, clients, webhook_events"
)


@pytest.fixture
def runtime(settings: Any) -> Iterator[Any]:
    """A worker runtime (engine, broker in this test's own Redis namespace, actors), clean tables."""
    from tasks.runtime import build_worker

    runtime = build_worker(settings)
    with runtime.engine.begin() as conn:
        # Fail fast, rather than hang, if a previous test left a transaction open.
        conn.execute(text("SET LOCAL lock_timeout = '15s'"))
        conn.execute(text(f"TRUNCATE {BOOKING_TABLES} CASCADE"))
    yield runtime
    runtime.broker.close()
    runtime.engine.dispose()
    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(f"{settings.broker_namespace}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def proxy(servers: Any) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the local Stripe server; a module points its settings
    at `proxy.url` to use it."""
    proxy = FaultProxy(servers.stripe_url)
    yield proxy
    proxy.stop()


@pytest.fixture
def outcomes(runtime: Any) -> MessageOutcomes:
    """Every exception this test's actors raised: each one a retry (or a dead letter) that the
    final states alone would not show. Installed before the worker starts."""
    recorder = MessageOutcomes()
    runtime.broker.add_middleware(recorder)
    return recorder


@pytest.fixture
def worker(runtime: Any, outcomes: MessageOutcomes) -> Iterator[dramatiq.Worker]:
    """Real Dramatiq worker threads consuming this test's queues."""
    worker = dramatiq.Worker(runtime.broker, worker_threads=8, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def app(runtime: Any, settings: Any) -> Iterator[falcon.testing.TestClient]:
    from api.app import create_app

    redis_client = redis.Redis.from_url(settings.redis_url)
    yield falcon.testing.TestClient(create_app(runtime.context, redis_client=redis_client))
    redis_client.close()


@pytest.fixture
def api(app: falcon.testing.TestClient, runtime: Any) -> ApiClient:
    return ApiClient.for_new_client(app, runtime.context.sessions, "test-client")


@pytest.fixture
def other_api(app: falcon.testing.TestClient, runtime: Any) -> ApiClient:
    return ApiClient.for_new_client(app, runtime.context.sessions, "other-client")
