"""Read and repair the Redis broker's queues for operators: depths, dead letters, retry, delete.

This knows Dramatiq's Redis layout (see dramatiq/brokers/redis/dispatch.lua):
`ns:queue` is the list of ready message ids, `ns:queue.DQ` the delayed ones, `ns:queue.XQ` a
sorted set of dead-lettered ids (scored by when they died), each with a `.msgs` hash of bodies,
and `ns:__acks__.<worker>.<queue>` the ids a worker has fetched and not yet acknowledged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

from services import queues
from tasks.broker import dead_letter_reasons_key

QUEUES = (queues.BOOKINGS, queues.PAYMENTS, queues.WEBHOOKS, queues.MAINTENANCE)


@dataclass(frozen=True)
class QueueDepth:
    name: str
    ready: int
    delayed: int
    in_flight: int
    dead: int


@dataclass(frozen=True)
class DeadLetter:
    redis_id: str
    message_id: str
    actor: str
    args: list[Any]
    died_at: datetime
    retries: int
    error: str  # the exception that killed it: what went wrong, not the whole stack


class QueueInspector:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.ns = namespace

    def depths(self) -> list[QueueDepth]:
        acks = [key.decode() for key in self.client.scan_iter(f"{self.ns}:__acks__.*", count=500)]
        pipe = self.client.pipeline(transaction=False)
        for name in QUEUES:
            pipe.llen(f"{self.ns}:{name}")
            pipe.llen(f"{self.ns}:{name}.DQ")
            pipe.zcard(f"{self.ns}:{name}.XQ")
        for key in acks:
            pipe.scard(key)
        counts = pipe.execute()
        in_flight = dict.fromkeys(QUEUES, 0)
        for key, count in zip(acks, counts[3 * len(QUEUES):], strict=True):
            queue = key.rsplit(".", 1)[-1] if not key.endswith(".DQ") else key.rsplit(".", 2)[-2]
            if queue in in_flight:
                in_flight[queue] += int(count)
        return [
            QueueDepth(name, counts[3 * i], counts[3 * i + 1], in_flight[name], counts[3 * i + 2])
            for i, name in enumerate(QUEUES)
        ]

    def dead_letters(self, queue: str, *, limit: int = 50) -> list[DeadLetter]:
        # redis-py gives its sync and asyncio clients one signature (`Awaitable[T] | T`); this one is sync.
        ids = cast(
            list[tuple[bytes, float]],
            self.client.zrevrange(f"{self.ns}:{queue}.XQ", 0, limit - 1, withscores=True),
        )
        if not ids:
            return []
        bodies = cast(
            list[bytes | None],
            self.client.hmget(f"{self.ns}:{queue}.XQ.msgs", [redis_id for redis_id, _ in ids]),
        )
        messages = [json.loads(body) if body else None for body in bodies]
        reasons = cast(list[bytes | None], self.client.hmget(
            dead_letter_reasons_key(self.ns), [m.get("message_id", "") if m else "" for m in messages]
        ))
        letters = []
        for (redis_id, score), message, reason in zip(ids, messages, reasons, strict=True):
            if message is None:
                continue
            options = message.get("options") or {}
            letters.append(DeadLetter(
                redis_id=redis_id.decode(), message_id=message.get("message_id", ""),
                actor=message.get("actor_name", ""), args=list(message.get("args") or []),
                died_at=datetime.fromtimestamp(score / 1000, UTC), retries=int(options.get("retries") or 0),
                error=reason.decode() if reason else "",
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
        return message
