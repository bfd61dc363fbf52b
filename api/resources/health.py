"""Liveness and readiness."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import falcon
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from config.settings import Settings, sqlalchemy_url

#: What a readiness probe waits for an answer before it calls a dependency down.
CHECK_SECONDS = 0.5


class Health:
    """Liveness: the process answers. Deliberately touches nothing else."""

    auth = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Readiness:
    """Readiness: PostgreSQL and Redis answer; 503 names what is down, within a second.

    The checks use clients of their own, built to fail fast: the app's Redis client retries with
    backoff (seconds when Redis is down) and its engine may wait for a pooled connection, and a
    probe that outlasts its own timeout tells the orchestrator nothing. Both checks run at once;
    one that has not answered within `CHECK_SECONDS` counts as down (psycopg will not time out a
    connection attempt in under 2 s, so the deadline, not the driver, bounds a silent server).
    """

    auth = None

    def __init__(self, settings: Settings) -> None:
        self.redis = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=CHECK_SECONDS, socket_timeout=CHECK_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self.engine = readiness_engine(settings.database_url)
        self._checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readiness")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = self._run({"postgresql": self._postgresql, "redis": self._redis})
        down = sorted(name for name, ok in checks.items() if not ok)
        resp.media = {"status": "ok" if not down else "unavailable", "checks": {
            name: "ok" if ok else "down" for name, ok in checks.items()
        }}
        if down:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", "5")

    def _run(self, checks: dict[str, Any]) -> dict[str, bool]:
        futures: dict[str, Future[bool]] = {name: self._checks.submit(check) for name, check in checks.items()}
        wait(futures.values(), timeout=CHECK_SECONDS)
        return {name: future.done() and future.exception() is None and future.result() for name, future in futures.items()}

    def _postgresql(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    def _redis(self) -> bool:
        return bool(self.redis.ping())


def readiness_engine(database_url: str) -> Engine:
    """A connection per check (no pool to go stale or to wait on), each statement cut short."""
    return create_engine(
        sqlalchemy_url(database_url), poolclass=NullPool,
        connect_args={
            "application_name": "bookings-readiness", "connect_timeout": 2,
            "options": f"-c statement_timeout={int(CHECK_SECONDS * 1000)}",
        },
    )
