"""Engines and session factories are built by the process that needs them, never at import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from config.settings import sqlalchemy_url


def make_engine(
    database_url: str, *, pool_size: int = 10, application_name: str = "bookings",
    lock_timeout_ms: int = 2000, pre_ping: bool = True,
) -> Engine:
    """An engine whose every transaction waits at most `lock_timeout_ms` for a row lock.

    A stuck lock holder then turns into a retryable error instead of a pile-up of waiting
    workers; set once per connection, it costs no round trip per transaction.

    `pre_ping` tests each pooled connection before use (a round trip per transaction) so that no
    request fails after a database restart. Workers turn it off: a message that meets a dead
    connection is retried, and the pool then replaces every connection of the old server.
    """
    return create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_timeout=10,
        connect_args={
            "application_name": application_name,
            "connect_timeout": 5,
            "options": f"-c lock_timeout={int(lock_timeout_ms)}",
        },
    )


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: services return what they wrote.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back if it raises."""
    with sessions.begin() as session:
        yield session
