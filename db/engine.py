"""Engines and session factories are built by the process that needs them, never at import."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from config.settings import sqlalchemy_url
from db.driver import refuse_listeners_needing_context


def make_engine(
    database_url: str, *, pool_size: int = 10, application_name: str = "bookings",
    lock_timeout_ms: int = 2000, pre_ping: bool = True, ping_after_idle: float = 1.0,
    max_overflow: int | None = None,
) -> Engine:
    """An engine whose every transaction waits at most `lock_timeout_ms` for a row lock.

    A stuck lock holder then turns into a retryable error instead of a pile-up of waiting
    workers; set once per connection, it costs no round trip per transaction.

    `pre_ping` tests a pooled connection that sat idle for more than `ping_after_idle` seconds
    before it is used, so a database restart during a quiet spell fails no request; one used a
    moment ago skips the round trip (if the server died in that moment, the statement using it
    fails, and SQLAlchemy then replaces every pooled connection of that server). Workers turn it
    off: a message that meets a dead connection is retried.

    `max_overflow` connections beyond `pool_size` are opened when needed and closed on return
    (default: as many again as `pool_size`).
    """
    engine = create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=10,
        # Last in, first out: under load the same few connections are reused and skip the ping
        # below, and the rest sit idle long enough for PostgreSQL or the pool to retire them.
        pool_use_lifo=True,
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        connect_args={
            "application_name": application_name,
            "connect_timeout": 5,
            # A server that vanished without closing the connection (a failover, a dropped
            # route) is noticed within about half a minute, not after the kernel's two hours:
            # a request, or a batch of them (db.group_commit), does not wait on it forever.
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
            "tcp_user_timeout": 30_000,
            "options": f"-c lock_timeout={int(lock_timeout_ms)}",
        },
    )
    if pre_ping:
        _ping_idle_connections(engine, ping_after_idle)
    # Listeners on the Engine class apply to this engine too: refuse those db.driver cannot serve.
    refuse_listeners_needing_context(engine)
    return engine


def _ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """SQLAlchemy's `pool_pre_ping`, minus the round trip for connections in steady use."""

    @event.listens_for(engine.pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")  # None: opened for this checkout
        if checked_in_at is None or time.monotonic() - checked_in_at <= idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as ex:
            if not engine.dialect.is_disconnect(ex, dbapi_connection, None):
                raise
            # As SQLAlchemy's own pre-ping: the server went away, so every connection opened
            # before now is replaced, and this checkout gets a fresh one.
            raise exc.InvalidatePoolError(str(ex)) from ex


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: services return what they wrote.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back if it raises."""
    with sessions.begin() as session:
        yield session
