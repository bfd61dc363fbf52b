"""A dead worker's messages back in their queues within seconds, and a live one's never.

Dramatiq's Redis broker keeps every message a worker has fetched in that worker's "acks" set
until it is acknowledged. If the worker dies, the messages come back only in a maintenance
pass, which Dramatiq runs on a random share of broker commands (0.1% by default), for workers
whose heartbeat is older than `heartbeat_timeout`; the heartbeat is refreshed only when the
worker happens to talk to Redis. So a SIGKILLed worker's messages waited minutes, and a short
timeout alone would requeue the messages of a live worker whose threads are all busy.

Here each worker process refreshes its own heartbeat and runs the pass on every queue on a
clock, several times per heartbeat timeout: a dead worker's messages are requeued at most
`timeout + timeout / PASSES_PER_TIMEOUT` after it died, and a live worker is never late.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)

#: How many heartbeats and passes a worker runs per heartbeat timeout.
PASSES_PER_TIMEOUT = 6

#: dispatch.lua unpacks the ids of expired dead letters in chunks of this size (well under
#: Lua's stack limit, which Dramatiq itself halves).
UNPACK_CHUNK = 1000


def worker_id() -> str:
    """A broker id that names its process (`host-pid-random`), so an operator or a test can
    tell whose messages an acks set holds; the random part keeps ids unique when a container
    restarts with the same host name and pid."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def requeue_dead_workers(broker: RedisBroker, *, now_ms: int | None = None) -> None:
    """Run Dramatiq's maintenance pass on every declared queue now; refreshes our heartbeat.

    The pass lives in dispatch.lua and runs before whatever command the call names when its
    `do_maintenance` argument is 1; "qsize" only reads, so the call does nothing else.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    dispatch = broker.scripts["dispatch"]
    for queue_name in sorted(broker.get_declared_queues() | broker.get_declared_delay_queues()):
        # dispatch.lua's arguments: command, timestamp, queue, worker id, heartbeat timeout,
        # dead-message TTL, do_maintenance, max unpack size.
        dispatch(keys=[broker.namespace], args=[
            "qsize", now_ms, queue_name, broker.broker_id, broker.heartbeat_timeout,
            broker.dead_message_ttl, 1, UNPACK_CHUNK,
        ])


class Redelivery(Middleware):
    """Runs `requeue_dead_workers` every `heartbeat_timeout / PASSES_PER_TIMEOUT` while the
    worker runs, on a thread of its own so busy worker threads cannot delay the heartbeat."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if isinstance(broker, RedisBroker):
            self._stop = threading.Event()  # one per worker: a broker may outlive a stopped worker
            threading.Thread(target=self._run, args=(broker, self._stop), name="redelivery", daemon=True).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Not before: a worker finishing its messages on the way out is alive, and must not
        # have them requeued under it if that takes longer than the heartbeat timeout.
        self._stop.set()

    @staticmethod
    def _run(broker: RedisBroker, stop: threading.Event) -> None:
        every = broker.heartbeat_timeout / 1000 / PASSES_PER_TIMEOUT
        while True:
            try:
                requeue_dead_workers(broker)
            except Exception:
                # Redis away: the worker's own commands fail too; try again on the next beat.
                log.warning("heartbeat and dead-worker pass failed", exc_info=True)
            if stop.wait(every):
                return
