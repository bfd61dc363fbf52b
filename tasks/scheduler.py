"""The scheduler: one leader enqueues the periodic maintenance actors; workers do the work.

Leadership is a PostgreSQL advisory lock held on a dedicated connection for as long as the
process leads. A second scheduler started by mistake waits as a standby and takes over within
seconds of the leader dying (the lock goes with the leader's connection). The jobs themselves
are safe to run twice, so a brief overlap during a takeover does no harm either.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC

import dramatiq
import psycopg
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from config.settings import Settings
from services import queues
from services.queues import Route
from tasks.broker import make_broker

log = logging.getLogger(__name__)

#: The advisory lock id that makes a scheduler the leader (any constant unique to this app).
LEADER_LOCK = 0x626B_5343  # "bkSC"
STANDBY_POLL_SECONDS = 1.0
LEADER_HEARTBEAT_SECONDS = 2.0


def schedule(settings: Settings) -> list[tuple[Route, IntervalTrigger | CronTrigger]]:
    return [
        (queues.EXPIRE_BOOKINGS, IntervalTrigger(seconds=settings.expire_every_seconds)),
        (queues.RELAY_OUTBOX, IntervalTrigger(seconds=settings.relay_every_seconds)),
        (queues.RECONCILE_BOOKINGS, IntervalTrigger(seconds=settings.reconcile_every_seconds)),
        (queues.AUDIT_PAYMENTS, IntervalTrigger(seconds=settings.audit_every_seconds)),
        (queues.PURGE_IDEMPOTENCY_KEYS, IntervalTrigger(seconds=settings.purge_every_seconds)),
        (queues.GUARD_AUTHORIZATIONS, IntervalTrigger(seconds=settings.guard_every_seconds)),
        (queues.ARCHIVE_BOOKINGS, CronTrigger(hour=settings.archive_at_hour, minute=0, timezone=UTC)),
        (queues.DELIVER_WEBHOOKS, IntervalTrigger(seconds=settings.notify_every_seconds)),
        (queues.SEND_EMAILS, IntervalTrigger(seconds=settings.notify_every_seconds)),
    ]


def run_scheduler(settings: Settings, stop: threading.Event) -> None:
    """Lead when the lock is free, stand by otherwise, until `stop` is set."""
    broker = make_broker(settings)
    while not stop.is_set():
        try:
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                if _try_lead(conn):
                    log.info("scheduler is the leader")
                    _lead(settings, broker, conn, stop)
                    continue
        except psycopg.OperationalError:
            log.warning("scheduler lost its database connection; standing by", exc_info=True)
        stop.wait(STANDBY_POLL_SECONDS)
    broker.close()


def _try_lead(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
    return bool(row and row[0])


def _lead(settings: Settings, broker: dramatiq.Broker, conn: psycopg.Connection, stop: threading.Event) -> None:
    scheduler = BackgroundScheduler(timezone=UTC)
    for route, trigger in schedule(settings):
        # One tick at a time per job, and a late tick is run once rather than caught up.
        scheduler.add_job(
            _enqueue, trigger, args=(broker, route), id=route.actor_name,
            max_instances=1, coalesce=True, misfire_grace_time=30,
        )
    scheduler.start()
    try:
        # Leading lasts as long as the lock's connection: check it, and stop leading if it dies.
        while not stop.wait(LEADER_HEARTBEAT_SECONDS):
            conn.execute("SELECT 1")
    finally:
        scheduler.shutdown(wait=False)


def _enqueue(broker: dramatiq.Broker, route: Route) -> None:
    broker.enqueue(dramatiq.Message(
        queue_name=route.queue_name, actor_name=route.actor_name, args=(), kwargs={}, options={},
    ))
    # Every few seconds, for ever: news only when looked for.
    log.debug("enqueued %s", route.actor_name)
