"""Read and repair the Redis broker's queues for operators: depths, dead letters, retry, delete
(tasks.rabbitmq has the same for RabbitMQ), and why each dead letter died, kept in Redis for both.

This knows Dramatiq's Redis layout (see dramatiq/brokers/redis/dispatch.lua):
`ns:queue` is the list of ready message ids (oldest first), `ns:queue.DQ` the delayed ones,
`ns:queue.XQ` a sorted set of dead-lettered ids (scored by when they died), each with a `.msgs`
hash of bodies, and `ns:__acks__.<worker>.<queue>` the ids a worker has fetched and not yet
acknowledged. A worker fetches delayed messages early and holds them until they are due, so
`.DQ.msgs` (not the `.DQ` list) counts every delayed message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import orjson
import redis

from services import queues

QUEUES = (queues.BOOKINGS, queues.PAYMENTS, queues.WEBHOOKS, queues.MAINTENANCE, queues.NOTIFICATIONS)


@dataclass(frozen=True)
class QueueDepth:
    name: str
    ready: int
    delayed: int
    in_flight: int | None  # None: the broker cannot tell (RabbitMQ over AMQP)
    dead: int
    latency_seconds: float = 0.0  # age of the oldest ready message: how long work waits


@dataclass(frozen=True)
class DelayedMessage:
    """A message due later: a retry after a failure (`retries` > 0) or one sent with a delay."""

    message_id: str
    queue: str
    actor: str
    args: list[Any]
    retries: int
    due_at: datetime | None
    last_error: str  # the last line of the previous attempt's traceback
    request_id: str | None


@dataclass(frozen=True)
class DeadLetter:
    redis_id: str  # what the dashboard's actions name it by: the Redis id, or on RabbitMQ the message id
    message_id: str
    actor: str
    args: list[Any]
    died_at: datetime
    retries: int
    error: str  # the exception that killed it: what went wrong, on one line
    queue: str = ""
    request_id: str | None = None
    traceback: str = ""  # where it went wrong


class QueueInspection(Protocol):
    """What the dashboard and the outbox relay need to know about the queues, on either broker."""

    def depths(self, *, now: datetime | None = None) -> list[QueueDepth]: ...

    def delayed_messages(self, queue: str, *, limit: int = 100) -> list[DelayedMessage]: ...

    def dead_letters(self, queue: str, *, limit: int | None = 50) -> list[DeadLetter]: ...

    def take_dead_letter(self, queue: str, redis_id: str) -> dict[str, Any] | None: ...


def dead_letter_reasons_key(namespace: str) -> str:
    return f"{namespace}:__dead_reasons__"


class DeadLetterReasons:
    """Why each dead letter died, by message id: neither broker keeps a message's error."""

    TTL_SECONDS = 7 * 86400

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.key = dead_letter_reasons_key(namespace)

    def record(self, message_id: str, reason: str) -> None:
        with self.client.pipeline() as pipe:
            pipe.hset(self.key, message_id, reason)
            pipe.expire(self.key, self.TTL_SECONDS)
            pipe.execute()

    def forget(self, message_id: str) -> None:
        self.client.hdel(self.key, message_id)

    def of(self, message_ids: list[str]) -> dict[str, str]:
        if not message_ids:
            return {}
        found = cast(list[bytes | None], self.client.hmget(self.key, message_ids))
        return {message_id: reason.decode() for message_id, reason in zip(message_ids, found, strict=True) if reason}


class QueueInspector:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.ns = namespace

    def depths(self, *, now: datetime | None = None) -> list[QueueDepth]:
        acks = [key.decode() for key in self.client.scan_iter(f"{self.ns}:__acks__.*", count=500)]
        pipe = self.client.pipeline(transaction=False)
        for name in QUEUES:
            pipe.llen(f"{self.ns}:{name}")
            pipe.hlen(f"{self.ns}:{name}.DQ.msgs")
            pipe.zcard(f"{self.ns}:{name}.XQ")
            pipe.lindex(f"{self.ns}:{name}", 0)
        for key in acks:
            pipe.scard(key)
        counts = pipe.execute()
        in_flight = dict.fromkeys(QUEUES, 0)
        for key, count in zip(acks, counts[4 * len(QUEUES):], strict=True):
            queue = key.rsplit(".", 1)[-1]  # a delayed queue's acks (`….DQ`) are counted as delayed
            if queue in in_flight:
                in_flight[queue] += int(count)
        latencies = self._latencies([counts[4 * i + 3] for i in range(len(QUEUES))], now or datetime.now(UTC))
        return [
            QueueDepth(name, counts[4 * i], counts[4 * i + 1], in_flight[name], counts[4 * i + 2], latencies[i])
            for i, name in enumerate(QUEUES)
        ]

    def _latencies(self, oldest_ids: list[bytes | None], now: datetime) -> list[float]:
        pipe = self.client.pipeline(transaction=False)
        for name, oldest in zip(QUEUES, oldest_ids, strict=True):
            pipe.hget(f"{self.ns}:{name}.msgs", (oldest or b"").decode())
        latencies = []
        for body in pipe.execute():
            message = json.loads(body) if body else None
            if message is None:
                latencies.append(0.0)
                continue
            # A delayed message was ready from its due time on, not from when it was sent.
            ready_ms = max(message.get("message_timestamp") or 0, (message.get("options") or {}).get("eta") or 0)
            latencies.append(max(0.0, round(now.timestamp() - ready_ms / 1000, 3)))
        return latencies

    def delayed_messages(self, queue: str, *, limit: int = 100) -> list[DelayedMessage]:
        """Up to `limit` delayed messages of `queue`, soonest due first."""
        bodies: list[bytes] = []
        for _, body in self.client.hscan_iter(f"{self.ns}:{queue}.DQ.msgs", count=500):
            bodies.append(body)
            if len(bodies) >= 10 * limit:  # a sample wide enough to sort; the page shows a few
                break
        delayed = [_delayed(queue, json.loads(body)) for body in bodies]
        delayed.sort(key=lambda d: d.due_at or datetime.max.replace(tzinfo=UTC))
        return delayed[:limit]

    def dead_letters(self, queue: str, *, limit: int | None = 50) -> list[DeadLetter]:
        """The newest `limit` dead letters of `queue` (all of them with None), newest first."""
        # redis-py gives its sync and asyncio clients one signature (`Awaitable[T] | T`); this one is sync.
        ids = cast(
            list[tuple[bytes, float]],
            self.client.zrevrange(f"{self.ns}:{queue}.XQ", 0, (limit or 0) - 1, withscores=True),
        )
        if not ids:
            return []
        bodies = cast(
            list[bytes | None],
            self.client.hmget(f"{self.ns}:{queue}.XQ.msgs", [redis_id for redis_id, _ in ids]),
        )
        messages = [orjson.loads(body) if body else None for body in bodies]  # thousands at a time: the fast parser
        reasons = cast(list[bytes | None], self.client.hmget(
            dead_letter_reasons_key(self.ns), [m.get("message_id", "") if m else "" for m in messages]
        ))
        letters = []
        for (redis_id, score), message, reason in zip(ids, messages, reasons, strict=True):
            if message is None:
                continue
            options = message.get("options") or {}
            error, _, stack = (reason.decode() if reason else "").partition("\n")
            letters.append(DeadLetter(
                redis_id=redis_id.decode(), message_id=message.get("message_id", ""),
                actor=message.get("actor_name", ""), args=list(message.get("args") or []),
                died_at=datetime.fromtimestamp(score / 1000, UTC), retries=int(options.get("retries") or 0),
                error=error, queue=queue, request_id=options.get("request_id"), traceback=stack,
            ))
        return letters

    def take_dead_letter(self, queue: str, redis_id: str) -> dict[str, Any] | None:
        """Remove a dead letter and return its message (to re-send or to drop)."""
        key = f"{self.ns}:{queue}.XQ"
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(f"{key}.msgs", redis_id)
        pipe.zrem(key, redis_id)
        pipe.hdel(f"{key}.msgs", redis_id)
        body, removed, _ = pipe.execute()
        if body is None or not removed:
            return None
        message: dict[str, Any] = json.loads(body)
        self.client.hdel(dead_letter_reasons_key(self.ns), message.get("message_id", ""))
        return message


def _delayed(queue: str, message: dict[str, Any]) -> DelayedMessage:
    options = message.get("options") or {}
    trace = (options.get("traceback") or "").strip().splitlines()
    return DelayedMessage(
        message_id=message.get("message_id", ""), queue=queue, actor=message.get("actor_name", ""),
        args=list(message.get("args") or []), retries=int(options.get("retries") or 0),
        due_at=datetime.fromtimestamp(options["eta"] / 1000, UTC) if options.get("eta") else None,
        last_error=trace[-1] if trace else "", request_id=options.get("request_id"),
    )
