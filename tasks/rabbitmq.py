"""RabbitMQ as the broker (`BROKER_URL=amqp://...`): quorum queues under the deployment's namespace,
and the operators' view of them (depths, dead letters, retry, delete) over AMQP alone.

Dramatiq's RabbitmqBroker declares three classic queues per queue name: the queue, `.DQ` for
delayed messages and `.XQ` for dead letters. Here they are quorum queues, which replicate across
the nodes of a cluster, and each is named `namespace.queue`, so `BROKER_NAMESPACE` keeps two
deployments (or two test runs) apart on one RabbitMQ, as it does on Redis.

A dead worker's messages need nothing from us: RabbitMQ returns a consumer's unacknowledged
messages to their queue the moment its connection closes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, MAX_ENQUEUE_ATTEMPTS, RabbitmqBroker
from dramatiq.common import current_millis, dq_name, q_name, xq_name
from dramatiq.errors import ConnectionClosed

from tasks.queue_inspection import QUEUES, DeadLetter, DeadLetterReasons, DelayedMessage, QueueDepth

#: A message its consumers dropped this many times (each a crash or a lost connection mid-run)
#: is dead-lettered rather than crash the next worker too; RabbitMQ 4 has this default anyway.
POISON_DELIVERY_LIMIT = 20
#: The delay queue's messages sit in a worker's memory until due and come back at every worker
#: restart, and the dashboard returns dead letters after reading them: neither is a poison sign.
#: (A limit of -1 drops a returned message at once on RabbitMQ 3.10, so "no limit" is a big one.)
UNLIMITED_DELIVERIES = 1_000_000_000
#: How many dead letters the dashboard reads from the head of a dead-letter queue at most.
DEAD_LETTER_SCAN = 1_000


def is_amqp_url(url: str) -> bool:
    return url.startswith(("amqp://", "amqps://"))


class QuorumRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitmqBroker with quorum queues named `namespace.queue`.

    Messages keep their plain queue names (the outbox and the actors know no namespace); only
    what is declared, published to and consumed from on the server carries the prefix.
    """

    def __init__(self, *, url: str, namespace: str, **options: Any) -> None:
        super().__init__(url=url, **options)
        self.namespace = namespace
        # pika logs every connection and channel it opens at INFO, in the middle of a task's lines.
        logging.getLogger("pika").setLevel(logging.WARNING)
        self.broker_id = ""  # the worker registry's name for this process (see tasks.redelivery.worker_id)

    def physical(self, queue_name: str) -> str:
        return f"{self.namespace}.{queue_name}"

    def _arguments(self, queue_name: str, delivery_limit: int) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.physical(xq_name(queue_name)),
            # A message is removed from its queue only once its dead-letter queue has it.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def _declare_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=self.physical(queue_name), durable=True,
            arguments=self._arguments(queue_name, POISON_DELIVERY_LIMIT),
        )

    def _declare_dq_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=self.physical(dq_name(queue_name)), durable=True,
            arguments=self._arguments(queue_name, UNLIMITED_DELIVERIES),
        )

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(queue=self.physical(xq_name(queue_name)), durable=True, arguments={
            "x-queue-type": "quorum", "x-delivery-limit": UNLIMITED_DELIVERIES,
            # Dramatiq's: a fixed TTL, since RabbitMQ expires messages from the head only.
            "x-message-ttl": DEAD_MESSAGE_TTL,
        })

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        self.declare_queue(queue_name, ensure=True)
        consumer: dramatiq.Consumer = self.consumer_class(self, self.physical(queue_name), prefetch, timeout)
        return consumer

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        """Dramatiq's enqueue, publishing to the namespaced queue."""
        canonical = message.queue_name
        if delay is not None:
            message = message.copy(queue_name=dq_name(canonical), options={"eta": current_millis() + delay})
        for attempt in range(1, MAX_ENQUEUE_ATTEMPTS + 1):
            try:
                self.declare_queue(canonical, ensure=True)
                self.emit_before("enqueue", message, delay)
                self.channel.basic_publish(
                    exchange="", routing_key=self.physical(message.queue_name), body=message.encode(),
                    properties=pika.BasicProperties(delivery_mode=2), mandatory=self.confirm_delivery,
                )
                self.emit_after("enqueue", message, delay)
                return message
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as error:
                del self.connection  # the next attempt opens a new connection and channel
                if isinstance(error, pika.exceptions.UnroutableError):
                    self.queues_pending.add(q_name(canonical))  # the queue is gone: declare it again
                if attempt == MAX_ENQUEUE_ATTEMPTS:
                    raise ConnectionClosed(error) from None
        raise AssertionError("unreachable")

    def flush(self, queue_name: str) -> None:
        for name in (queue_name, dq_name(queue_name), xq_name(queue_name)):
            try:
                self.channel.queue_purge(self.physical(name))
            except pika.exceptions.AMQPChannelError:
                del self.channel

    def delete_queues(self, queue_names: tuple[str, ...] = QUEUES) -> None:
        """Delete this namespace's queues from the server (a test's, a benchmark's)."""
        for name in queue_names:
            for queue in (name, dq_name(name), xq_name(name)):
                self.channel.queue_delete(self.physical(queue))


class RabbitmqQueueInspector:
    """The dashboard's view of the queues on RabbitMQ, over AMQP only (no management plugin).

    AMQP tells a queue's ready messages and no more: the messages workers hold unacknowledged
    (running, prefetched, or delayed ones waiting in a worker's memory until due) are not
    counted, so `in_flight` is unknown (None) and `delayed` counts only delayed messages no
    worker has taken yet; the workers' Prometheus metrics count the rest.
    """

    def __init__(self, broker: QuorumRabbitmqBroker, reasons: DeadLetterReasons | None = None) -> None:
        self.broker = broker
        self.reasons = reasons

    def depths(self, *, now: datetime | None = None) -> list[QueueDepth]:
        """Latency stays 0: peeking at a queue's oldest message (fetch, then return it) would count
        as one of its deliveries on RabbitMQ 4.0 to 4.2, and poison-message handling counts those."""
        depths = []
        for name in QUEUES:
            ready, delayed, dead = self._counts(name)
            depths.append(QueueDepth(name, ready, delayed, None, dead))
        return depths

    def delayed_messages(self, queue: str, *, limit: int = 100) -> list[DelayedMessage]:
        """None listed: workers take delayed messages early and hold them, unacknowledged, until due."""
        return []

    def _counts(self, queue_name: str) -> tuple[int, int, int]:
        try:
            return self.broker.get_queue_message_counts(queue_name)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError):
            del self.broker.connection  # RabbitMQ restarted: reconnect once
            return self.broker.get_queue_message_counts(queue_name)

    def dead_letters(self, queue: str, *, limit: int | None = 50) -> list[DeadLetter]:
        with self._reading_dead_letters(queue) as reader:
            letters = [_dead_letter(queue, body, properties) for _, properties, body in reader]
        reasons = self.reasons.of([letter.message_id for letter in letters]) if self.reasons else {}
        letters = [_with_reason(letter, reasons.get(letter.message_id, "")) for letter in letters]
        # Newest first, as on Redis; the queue holds them oldest first.
        return sorted(letters, key=lambda letter: letter.died_at, reverse=True)[:limit]

    def take_dead_letter(self, queue: str, redis_id: str) -> dict[str, Any] | None:
        """Remove a dead letter, found by its message id (`redis_id` names it on both brokers)."""
        letter_id = redis_id
        with self._reading_dead_letters(queue) as reader:
            for method, _, body in reader:
                message: dict[str, Any] = json.loads(body)
                if message.get("message_id") == letter_id:
                    reader.channel.basic_ack(method.delivery_tag)
                    if self.reasons:
                        self.reasons.forget(letter_id)
                    return message
        return None

    @contextmanager
    def _reading_dead_letters(self, queue: str) -> Iterator[_DeadLetterReader]:
        """Reads a dead-letter queue without taking from it: every message fetched and not acked
        goes back to the queue when the channel closes."""
        try:
            self.broker.declare_queue(queue, ensure=True)
            channel = self.broker.connection.channel()
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError, ConnectionClosed):
            del self.broker.connection  # RabbitMQ restarted: reconnect once
            self.broker.declare_queue(queue, ensure=True)
            channel = self.broker.connection.channel()
        try:
            yield _DeadLetterReader(channel, self.broker.physical(xq_name(queue)))
        finally:
            if channel.is_open:
                channel.close()


class _DeadLetterReader:
    def __init__(self, channel: Any, queue: str) -> None:
        self.channel, self.queue = channel, queue

    def __iter__(self) -> Iterator[tuple[Any, Any, bytes]]:
        for _ in range(DEAD_LETTER_SCAN):
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=False)
            if method is None:
                return
            yield method, properties, body


def _with_reason(letter: DeadLetter, reason: str) -> DeadLetter:
    error, _, stack = reason.partition("\n")  # as tasks.broker.dead_letter_reason writes it
    return replace(letter, error=error, traceback=stack)


def _dead_letter(queue: str, body: bytes, properties: Any) -> DeadLetter:
    message = json.loads(body)
    options = message.get("options") or {}
    # RabbitMQ stamps when it dead-lettered the message in its x-death header.
    deaths = (properties.headers or {}).get("x-death") or [{}]
    died = deaths[0].get("time")
    died_at = died if isinstance(died, datetime) else datetime.fromtimestamp(message["message_timestamp"] / 1000, UTC)
    return DeadLetter(
        redis_id=message.get("message_id", ""), message_id=message.get("message_id", ""),
        actor=message.get("actor_name", ""), args=list(message.get("args") or []),
        died_at=died_at if died_at.tzinfo else died_at.replace(tzinfo=UTC),
        retries=int(options.get("retries") or 0), error="", queue=queue, request_id=options.get("request_id"),
    )
