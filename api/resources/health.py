"""Liveness and readiness."""

from __future__ import annotations

import falcon
import redis
from sqlalchemy import text

from services.context import Context


class Health:
    """Liveness: the process answers. Deliberately touches nothing else."""

    auth = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Readiness:
    """Readiness: PostgreSQL and Redis answer; 503 names what is down."""

    auth = None

    def __init__(self, ctx: Context, redis_client: redis.Redis) -> None:
        self.ctx = ctx
        self.redis = redis_client

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {"postgresql": self._postgresql(), "redis": self._redis()}
        down = sorted(name for name, ok in checks.items() if not ok)
        resp.media = {"status": "ok" if not down else "unavailable", "checks": {
            name: "ok" if ok else "down" for name, ok in checks.items()
        }}
        if down:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", "5")

    def _postgresql(self) -> bool:
        try:
            with self.ctx.sessions() as session:
                session.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def _redis(self) -> bool:
        try:
            return bool(self.redis.ping())
        except Exception:
            return False
