"""Throwaway databases for test runs, benchmarks and the fault campaign."""

from __future__ import annotations

import uuid

import psycopg
from sqlalchemy.engine import make_url

from db.engine import make_engine, make_sessions
from db.migrate import upgrade
from db.seed import seed_demo


def create_database(server_url: str, prefix: str) -> str:
    """A new, empty database on the server `server_url` points at; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate_and_seed(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url, pool_size=1)
    seed_demo(make_sessions(engine))
    engine.dispose()


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
