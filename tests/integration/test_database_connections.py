"""Pooled connections after their server side is gone (a database restart, a killed backend)."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import exc, text

from db.engine import make_engine


def _kill_backends(database_url: str, application_name: str) -> int:
    killer = make_engine(database_url, pre_ping=False)
    try:
        with killer.connect() as conn:
            return len(conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ), {"name": application_name}).all())
    finally:
        killer.dispose()


def _use_then_kill(settings, **engine_options):  # type: ignore[no-untyped-def]
    name = f"ping-test-{uuid.uuid4().hex[:8]}"
    engine = make_engine(settings.database_url, application_name=name, **engine_options)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert _kill_backends(settings.database_url, name) == 1
    time.sleep(0.3)
    return engine


def test_a_connection_idle_past_the_threshold_is_pinged_and_replaced(settings):
    engine = _use_then_kill(settings, ping_after_idle=0.1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(settings):
    # The other side of the trade: the first use of a dead connection fails, and the pool
    # replaces it for the next one.
    engine = _use_then_kill(settings, ping_after_idle=60)
    with pytest.raises(exc.OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
