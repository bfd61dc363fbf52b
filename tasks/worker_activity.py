"""What each worker process is doing, kept in Redis for the operators' console.

Every few seconds a worker writes one key that says who it is (host, pid, queues, threads)
and which message each busy thread runs since when; the key expires a few beats later, so a
worker that died drops off the list on its own. The same beat adds the outcomes counted
since the last one (done, retrying, dead-lettered) to a per-minute hash that expires after
two hours: the overview's chart costs one pipeline per beat, and its keys stay few.

Kept in Redis whatever the broker is: the console reads it with `worker_registry` below.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import dramatiq
import redis
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)

#: How often a worker writes its heartbeat and counts, and how many beats it may miss.
BEAT_SECONDS = 2.0
MISSED_BEATS = 4
#: How long per-minute counts are kept: the chart shows the last hour.
OUTCOME_RETENTION_SECONDS = 2 * 3600
OUTCOMES = ("done", "retrying", "dead_lettered")


def worker_key(namespace: str, worker: str) -> str:
    return f"{namespace}:__workers__.{worker}"


def outcome_key(namespace: str, minute: int) -> str:
    return f"{namespace}:__outcomes__.{minute}"


@dataclass
class _Running:
    message_id: str
    actor: str
    queue: str
    args: list[Any]
    request_id: str | None
    started_at: float


@dataclass
class _Process:
    worker: str
    queues: list[str] = field(default_factory=list)
    threads: int = 0
    running: dict[int, _Running] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)


class WorkerActivity(Middleware):
    """Heartbeat registry and per-minute outcome counts for one worker process.

    Registered before Retries so that its after-hook sees Retries' verdict (after-hooks run
    in reverse order).
    """

    def __init__(self, redis_url: str, namespace: str, worker: str) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.process = _Process(worker)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._client: redis.Redis | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.process.queues = sorted(getattr(worker, "consumer_whitelist", None) or broker.get_declared_queues())
        self.process.threads = int(getattr(worker, "worker_threads", 0))
        self._client = redis.Redis.from_url(self.redis_url)
        self._stop = threading.Event()
        threading.Thread(target=self._beat_forever, args=(self._stop,), name="worker-activity", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        try:
            self.beat(now=time.time())
            if self._client is not None:
                self._client.delete(worker_key(self.namespace, self.process.worker))
        except redis.RedisError:
            log.warning("could not remove this worker from the registry", exc_info=True)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        running = _Running(
            message.message_id, message.actor_name, message.queue_name, list(message.args)[:3],
            message.options.get("request_id"), time.time(),
        )
        with self._lock:
            self.process.running[threading.get_ident()] = running

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        outcome = "done" if exception is None else "dead_lettered" if message.failed else "retrying"
        with self._lock:
            self.process.running.pop(threading.get_ident(), None)
            self.process.outcomes[outcome] += 1

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self.process.running.pop(threading.get_ident(), None)
            self.process.outcomes["dead_lettered" if message.failed else "done"] += 1

    def _beat_forever(self, stop: threading.Event) -> None:
        while not stop.wait(BEAT_SECONDS):
            try:
                self.beat(now=time.time())
            except Exception:
                # Redis away: the worker's own commands fail too; the next beat tries again.
                log.warning("worker heartbeat failed", exc_info=True)

    def beat(self, *, now: float) -> None:
        """Write this process's registry entry and add the outcomes counted since the last beat."""
        with self._lock:
            state = self._describe(now)
            outcomes, self.process.outcomes = self.process.outcomes, Counter()
        assert self._client is not None, "beat() runs after the worker booted"
        key = outcome_key(self.namespace, int(now // 60))
        with self._client.pipeline(transaction=False) as pipe:
            pipe.set(worker_key(self.namespace, self.process.worker), json.dumps(state),
                     ex=int(BEAT_SECONDS * MISSED_BEATS) + 1)
            for outcome, count in outcomes.items():
                pipe.hincrby(key, outcome, count)
            if outcomes:
                pipe.expire(key, OUTCOME_RETENTION_SECONDS)
            try:
                pipe.execute()
            except redis.RedisError:
                with self._lock:  # counted again on the next beat rather than lost
                    self.process.outcomes.update(outcomes)
                raise

    def _describe(self, now: float) -> dict[str, Any]:
        return {
            "id": self.process.worker, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": self.process.queues, "threads": self.process.threads,
            "busy": len(self.process.running), "heartbeat_at": now,
            "current": [
                {"message_id": r.message_id, "actor": r.actor, "queue": r.queue, "args": r.args,
                 "request_id": r.request_id, "started_at": r.started_at}
                for r in self.process.running.values()
            ],
        }


@dataclass(frozen=True)
class OutcomeMinute:
    minute: datetime
    done: int
    retrying: int
    dead_lettered: int


class WorkerRegistry:
    """Reads what the workers wrote: who is alive and what ran per minute."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.ns = namespace

    def live_workers(self) -> list[dict[str, Any]]:
        keys = sorted(self.client.scan_iter(worker_key(self.ns, "*"), count=500))
        # redis-py gives its sync and asyncio clients one signature (`Awaitable[T] | T`); this one is sync.
        bodies = cast(list[bytes | None], self.client.mget(keys)) if keys else []
        workers = [json.loads(body) for body in bodies if body]  # expired between scan and get: gone
        for entry in workers:
            entry["heartbeat_at"] = datetime.fromtimestamp(entry["heartbeat_at"], UTC)
            for running in entry["current"]:
                running["started_at"] = datetime.fromtimestamp(running["started_at"], UTC)
        return sorted(workers, key=lambda w: (w["host"], w["pid"]))

    def outcomes_per_minute(self, now: datetime, *, minutes: int = 60) -> list[OutcomeMinute]:
        """The last `minutes` whole minutes and the current one, oldest first, zeros included."""
        last = int(now.timestamp() // 60)
        span = range(last - minutes + 1, last + 1)
        with self.client.pipeline(transaction=False) as pipe:
            for minute in span:
                pipe.hgetall(outcome_key(self.ns, minute))
            counts = pipe.execute()
        return [
            OutcomeMinute(datetime.fromtimestamp(minute * 60, UTC),
                          *(int(c.get(name.encode(), 0)) for name in OUTCOMES))
            for minute, c in zip(span, counts, strict=True)
        ]
