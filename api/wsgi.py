"""The web process's composition root: `gunicorn 'api.wsgi:create()'`."""

from __future__ import annotations

import falcon
import redis

from api.app import create_app
from config.logging import configure_logging
from config.settings import Settings
from db.engine import make_engine, make_sessions
from services.context import Context
from tasks.broker import make_broker, make_dispatcher, make_inspector


def create(settings: Settings | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    configure_logging("api")
    settings = settings or Settings.from_env()
    # The same ceiling as every process (2 x DB_POOL_SIZE), all of it kept open: a gevent worker
    # serves many requests at once, so under load overflow connections were opened and closed
    # by the burst, each a PostgreSQL backend started and torn down (bench/results/2026-12-06-speed.md).
    engine = make_engine(
        settings.database_url, pool_size=2 * settings.db_pool_size, max_overflow=0,
        application_name="bookings-api", lock_timeout_ms=settings.lock_timeout_ms,
    )
    broker = make_broker(settings, pipelined=True)
    ctx = Context(settings=settings, sessions=make_sessions(engine), dispatch=make_dispatcher(broker))
    return create_app(ctx, redis_client=redis.Redis.from_url(settings.redis_url, socket_timeout=2),
                      inspector=make_inspector(broker))
