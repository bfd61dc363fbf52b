"""The broker (Redis, or RabbitMQ when BROKER_URL is amqp://), its middleware, and sending staged
outbox messages to it."""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    CurrentMessage,
    Middleware,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from sqlalchemy.orm import Session, sessionmaker

from adapters.redis_pipelining import PipelinedRedis
from config.logging import pop, push
from config.settings import Settings
from db.engine import transaction
from services import queues
from services.outbox import StagedMessage, acknowledge
from tasks.queue_inspection import DeadLetterReasons, QueueInspection, QueueInspector
from tasks.rabbitmq import QuorumRabbitmqBroker, RabbitmqQueueInspector
from tasks.redelivery import Redelivery, worker_id
from tasks.worker_activity import WorkerActivity

log = logging.getLogger(__name__)

#: Retries back off from 1 s to 5 min; an actor overrides max_retries where it knows better.
DEFAULT_MAX_RETRIES = 10
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 300_000


class OutboxAcknowledgement(Middleware):
    """Deletes a message's outbox row once the message is done with: run, or dead-lettered.

    A message that will be retried keeps its row, so the relay can re-send it if Redis loses
    it. This runs after Retries has decided (after-hooks run in reverse order, so it is
    registered first). Acknowledgements are written in batches, a few times a second, by one
    thread: a row left behind by a crash only means the relay re-sends a finished message,
    which its actor then finds done.
    """

    FLUSH_SECONDS = 0.1

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._done: queue.SimpleQueue[uuid.UUID] = queue.SimpleQueue()
        self._flusher: threading.Thread | None = None
        self._lock = threading.Lock()

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None or message.failed:
            self._acknowledge(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._acknowledge(message)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.flush()

    def _acknowledge(self, message: Any) -> None:
        try:
            self._done.put(uuid.UUID(message.message_id))
        except ValueError:
            return
        with self._lock:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forever, name="outbox-ack", daemon=True)
                self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:
                log.warning("outbox acknowledgements failed; the relay will re-send", exc_info=True)

    def flush(self) -> None:
        ids = []
        while not self._done.empty():
            ids.append(self._done.get())
        if ids:
            with transaction(self.sessions) as session:
                acknowledge(session, ids)


class TaskContext(Middleware):
    """Puts the message's request id, actor, queue and booking on every log line of its run,
    logs how the run ended, and keeps why a dead-lettered message died (Dramatiq's dead-letter
    queue holds the message but not its error) for the operators' dashboard.

    Registered before Retries, so its after-hook sees Retries' verdict (after-hooks run in
    reverse order).
    """

    def __init__(self, reasons: DeadLetterReasons) -> None:
        self._tokens = threading.local()
        self.reasons = reasons

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        subject = str(message.args[0]) if message.args else None
        self._tokens.token = push(
            request_id=message.options.get("request_id"), actor=message.actor_name,
            queue=message.queue_name, message_id=message.message_id,
            booking_id=subject if message.actor_name in BOOKING_ACTORS else None,
            event_id=subject if message.actor_name == queues.APPLY_WEBHOOK_EVENT.actor_name else None,
        )

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        outcome = "done" if exception is None else "dead_lettered" if message.failed else "retrying"
        # Scheduled ticks succeed every few seconds; only their failures are news.
        quiet = exception is None and message.queue_name in (queues.MAINTENANCE, queues.NOTIFICATIONS)
        level = logging.DEBUG if quiet else logging.INFO if exception is None else logging.WARNING
        log.log(level, "message %s", outcome, extra={"outcome": outcome})
        if message.failed:
            self.reasons.record(message.message_id, dead_letter_reason(exception))
        token = getattr(self._tokens, "token", None)
        if token is not None:
            pop(token)
            self._tokens.token = None

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.after_process_message(broker, message, exception=RuntimeError("skipped"))


def dead_letter_reason(exception: BaseException | None) -> str:
    """The error on its first line (what went wrong), then the traceback (where), bounded."""
    if exception is None:
        return "skipped"
    error = f"{type(exception).__name__}: {exception}"[:500]
    stack = "".join(traceback.format_exception(exception))[-MAX_TRACEBACK_CHARS:]
    return f"{error}\n{stack}"


#: The end of a traceback is where the error was raised: keep that end of a long one.
MAX_TRACEBACK_CHARS = 8000


BOOKING_ACTORS = frozenset(route.actor_name for route in (
    queues.PLACE_BOOKING, queues.CONFIRM_BOOKING, queues.CANCEL_BOOKING, queues.RETRY_PAYMENT,
))


def make_broker(
    settings: Settings, *, sessions: sessionmaker[Session] | None = None, namespace: str | None = None,
    pipelined: bool = False,
) -> dramatiq.Broker:
    """A broker for one process, on RabbitMQ when `BROKER_URL` is set, else on Redis; the same
    middleware either way. Workers pass `sessions` so finished messages leave the outbox. The
    web process, which only sends, passes `pipelined`: on Redis, concurrent requests' enqueues
    then share round trips (`adapters.redis_pipelining`)."""
    namespace = namespace or settings.broker_namespace
    broker_id = worker_id()
    reasons = DeadLetterReasons(redis.Redis.from_url(settings.redis_url), namespace)
    middleware: list[Middleware] = []
    if sessions is not None:
        middleware.append(OutboxAcknowledgement(sessions))
    middleware += [
        TaskContext(reasons),
        WorkerActivity(settings.redis_url, namespace, broker_id),
        AgeLimit(),
        TimeLimit(time_limit=120_000),
        ShutdownNotifications(),
        # No Callbacks or Pipelines: nothing here uses them, and each is a hook on every message.
        Retries(max_retries=DEFAULT_MAX_RETRIES, min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS),
        CurrentMessage(),
    ]
    if settings.uses_rabbitmq:
        # Publisher confirms: enqueue returns once RabbitMQ has the message (the outbox would
        # re-send a lost one anyway, but 30 s later), and a deleted queue is declared again.
        rabbitmq = QuorumRabbitmqBroker(
            url=settings.broker_url, namespace=namespace, middleware=middleware, confirm_delivery=True,
        )
        rabbitmq.broker_id = broker_id
        return rabbitmq
    broker = RedisBroker(
        # Bounded: a silent Redis fails an enqueue (the outbox relay sends it later), not a request.
        client=PipelinedRedis(connection_pool=redis.ConnectionPool.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2, socket_keepalive=True,
        ), wait_timeout=5) if pipelined else None,
        url=None if pipelined else settings.redis_url,
        namespace=namespace,
        middleware=[*middleware, Redelivery()],
        # A dead worker's messages come back one heartbeat timeout after it died: Redelivery
        # runs the requeue pass on a clock (the random chance is only a fallback).
        heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
        maintenance_chance=settings.broker_maintenance_chance,
    )
    broker.broker_id = broker_id
    return broker


def make_inspector(broker: dramatiq.Broker) -> QueueInspection:
    """The operators' view of a broker's queues (depths, dead letters), whichever broker it is."""
    if isinstance(broker, QuorumRabbitmqBroker):
        (context,) = (m for m in broker.middleware if isinstance(m, TaskContext))
        return RabbitmqQueueInspector(broker, context.reasons)
    if isinstance(broker, RedisBroker):
        client = broker.client
        if isinstance(client, PipelinedRedis):  # long reads must not hold the enqueues back
            client = redis.Redis(connection_pool=client.connection_pool)
        return QueueInspector(client, broker.namespace)
    raise TypeError(f"no queue inspector for {type(broker).__name__}")


def make_dispatcher(broker: dramatiq.Broker) -> Callable[[Sequence[StagedMessage]], None]:
    """Send staged messages; a broker outage is logged and left to the outbox relay."""

    def dispatch(messages: Sequence[StagedMessage]) -> None:
        for staged in messages:
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=staged.queue_name, actor_name=staged.actor_name, args=staged.args,
                kwargs={}, options=dict(staged.options), message_id=str(staged.id),
            )
            try:
                broker.enqueue(message)
            except Exception:
                log.warning(
                    "could not enqueue %s %s; the outbox relay will send it",
                    staged.actor_name, staged.id, exc_info=True,
                )
                return

    return dispatch
