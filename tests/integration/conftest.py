"""Fixtures for tests against real PostgreSQL, Redis, Dramatiq workers and the local Stripe server.

A test's database writes are isolated one of two ways. A test without worker threads runs
inside one transaction on one connection, rolled back at the end: every session the code under
test opens joins it through a savepoint, so its commits are savepoint releases (as pypi/warehouse
does). A test with workers, or marked `commits` (other connections or threads must see its
writes: lock waits, concurrent requests, engines of its own), commits for real, and its tables
are truncated when it ends, so every test starts from the seeded catalog alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import dramatiq
import falcon.testing
import pytest
import redis
from sqlalchemy import Connection, text
from sqlalchemy.orm import sessionmaker

from services.context import Context
from testkit.faults import FaultProxy
from tests.integration.message_outcomes import MessageOutcomes
from tests.support import ApiClient

BOOKING_TABLES = (
    "bookings, booking_items, booking_transitions, payments, idempotency_keys, outbox, clients, webhook_events,"
    " booking_emails"
)


@pytest.fixture
def runtime(settings: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A worker runtime (engine, broker in this test's own namespace: Redis keys or RabbitMQ
    queues, deleted afterwards; actors) whose database writes are rolled back at the end, or
    truncated then when the test commits."""
    from tasks.runtime import build_worker

    runtime = build_worker(settings)
    commits = "worker" in request.fixturenames or request.node.get_closest_marker("commits") is not None
    try:
        if commits:
            try:
                yield runtime
            finally:  # after the worker has stopped: the next test, rolled back or not, starts clean
                _truncate(runtime.engine)
        else:
            with _rolled_back(runtime) as joined:
                yield joined
    finally:
        if settings.uses_rabbitmq:
            runtime.broker.delete_queues()
        runtime.broker.close()
        runtime.engine.dispose()
        _forget_keys(settings)


def _truncate(engine: Any) -> None:
    with engine.begin() as conn:
        # Fail fast, rather than hang, if a previous test left a transaction open.
        conn.execute(text("SET LOCAL lock_timeout = '15s'"))
        conn.execute(text(f"TRUNCATE {BOOKING_TABLES} CASCADE"))


@dataclasses.dataclass(frozen=True)
class JoinedContext(Context):
    """A Context whose sessions, and whatever asks for the engine, use the test's one connection."""

    outer: Any = None

    @property
    def engine(self) -> Any:
        return self.outer


class OuterConnection:
    """Stands in for the engine where code asks it for a connection of its own (the API's accept
    path runs two statements in autocommit): it gets the test's connection, inside a savepoint."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def connect(self) -> OuterConnection:
        return self

    def execution_options(self, **options: Any) -> OuterConnection:
        return self  # autocommit: each use commits its savepoint instead

    def begin(self) -> AbstractContextManager[Connection]:
        return self._savepoint()  # a transaction (group commit's): a savepoint

    @contextmanager
    def _savepoint(self) -> Iterator[Connection]:
        with self.connection.begin_nested():
            yield self.connection

    def __enter__(self) -> Connection:
        self._use = self._savepoint()
        return self._use.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        return self._use.__exit__(*exc)


@contextmanager
def _rolled_back(runtime: Any) -> Iterator[Any]:
    with runtime.engine.connect() as connection:
        outer = connection.begin()
        sessions = sessionmaker(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")
        fields = {f.name: getattr(runtime.context, f.name) for f in dataclasses.fields(Context)}
        context = JoinedContext(**{**fields, "sessions": sessions}, outer=OuterConnection(connection))
        try:
            yield dataclasses.replace(runtime, context=context)
        finally:
            outer.rollback()


def _forget_keys(settings: Any) -> None:
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
    from tasks.broker import make_inspector

    redis_client = redis.Redis.from_url(settings.redis_url)
    app = create_app(runtime.context, redis_client=redis_client, inspector=make_inspector(runtime.broker))
    yield falcon.testing.TestClient(app)
    redis_client.close()


@pytest.fixture
def api(app: falcon.testing.TestClient, runtime: Any) -> ApiClient:
    return ApiClient.for_new_client(app, runtime.context.sessions, "test-client")


@pytest.fixture
def other_api(app: falcon.testing.TestClient, runtime: Any) -> ApiClient:
    return ApiClient.for_new_client(app, runtime.context.sessions, "other-client")
