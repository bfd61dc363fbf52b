"""A dead worker's fetched messages go back to their queue one heartbeat timeout after it went
silent, and a worker that keeps its heartbeat keeps its messages (real Redis, injected clock)."""

from __future__ import annotations

import os
import time

import dramatiq
import pytest

from tasks.broker import make_broker
from tasks.redelivery import requeue_dead_workers

QUEUE = "redelivery-test"


@pytest.fixture
def brokers(settings):
    made = [make_broker(settings) for _ in range(2)]
    for broker in made:
        broker.declare_queue(QUEUE)
    yield made
    for broker in made:
        broker.flush_all()
        broker.close()


def fetch_three(broker) -> int:
    """Enqueue three messages and fetch them as a worker would; returns when it fetched (ms)."""
    for n in range(3):
        broker.enqueue(dramatiq.Message(queue_name=QUEUE, actor_name="noop", args=(n,), kwargs={}, options={}))
    consumer = broker.consume(QUEUE, prefetch=3)
    fetched_at = int(time.time() * 1000)
    assert all(next(consumer) is not None for _ in range(3))
    return fetched_at


def ready(broker) -> int:
    return broker.client.llen(f"{broker.namespace}:{QUEUE}")


def test_a_silent_workers_messages_are_requeued_once_its_heartbeat_is_stale(brokers):
    dead, survivor = brokers
    fetched_at = fetch_three(dead)
    timeout = survivor.heartbeat_timeout

    requeue_dead_workers(survivor, now_ms=fetched_at + timeout - 1_000)
    assert ready(survivor) == 0

    requeue_dead_workers(survivor, now_ms=fetched_at + timeout + 1_000)
    assert ready(survivor) == 3
    # And only once: the dead worker's acks are gone, so a later pass adds nothing.
    requeue_dead_workers(survivor, now_ms=fetched_at + timeout + 2_000)
    assert ready(survivor) == 3


def test_a_worker_that_runs_its_own_pass_keeps_its_heartbeat_and_its_messages(brokers):
    busy, other = brokers
    fetched_at = fetch_three(busy)
    later = fetched_at + 10 * busy.heartbeat_timeout

    # The busy worker fetched nothing for ten timeouts, but its pass beat for it.
    requeue_dead_workers(busy, now_ms=later)
    requeue_dead_workers(other, now_ms=later + 1_000)

    assert ready(other) == 0


def test_a_workers_acks_name_its_process(brokers):
    broker, _ = brokers
    fetch_three(broker)

    keys = [key.decode() for key in broker.client.scan_iter(f"{broker.namespace}:__acks__.*")]

    assert keys and all(f"-{os.getpid()}-" in key for key in keys)
