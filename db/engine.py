"""Engines and session factories are built by the process that needs them, never at import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from config.settings import sqlalchemy_url


def make_engine(database_url: str, *, pool_size: int = 10, application_name: str = "bookings") -> Engine:
    return create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"application_name": application_name, "connect_timeout": 5},
    )


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: services return what they wrote.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session], *, lock_timeout_ms: int | None = None) -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back if it raises.

    `lock_timeout_ms` bounds how long a row lock is waited for, so a stuck holder turns into
    a retryable error instead of a pile-up of waiting workers.
    """
    with sessions.begin() as session:
        if lock_timeout_ms is not None:
            session.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
        yield session
