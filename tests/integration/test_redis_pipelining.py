"""The web process's Redis client (adapters.redis_pipelining.PipelinedRedis): commands sent while
a round trip is out share the next one, each caller gets its own reply or error, and what runs
on it (scripts, the limiter, Dramatiq's enqueue) works as on a plain client. Real Redis."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dramatiq
import pytest
import redis

from adapters.redis_pipelining import PipelinedRedis
from tasks.broker import make_broker


@pytest.fixture
def client(settings: Any) -> Any:
    pool = redis.ConnectionPool.from_url(settings.redis_url, socket_timeout=2)
    client = PipelinedRedis(connection_pool=pool, wait_timeout=5)
    prefix = f"test-pipelining-{uuid.uuid4().hex[:8]}"
    yield client, prefix
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    pool.disconnect()


def test_concurrent_commands_share_round_trips_and_each_gets_its_own_reply(client):
    client, prefix = client
    start = threading.Barrier(32)

    def incr(n: int) -> int:
        start.wait()
        return int(client.incrby(f"{prefix}-{n % 4}", n))

    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(incr, range(32)))
    assert sum(int(client.get(f"{prefix}-{k}")) for k in range(4)) == sum(range(32))
    assert all(reply >= n for n, reply in enumerate(replies))
    assert client.round_trips < 32 + 1  # 32 commands and the GETs; usually far fewer round trips


def test_an_error_is_its_own_commands_only(client):
    client, prefix = client
    client.set(f"{prefix}-text", "not a number")
    start = threading.Barrier(8)

    def incr(key: str) -> Any:
        start.wait()
        try:
            return client.incr(key)
        except redis.ResponseError as exc:
            return exc

    keys = [f"{prefix}-text" if n % 2 else f"{prefix}-n{n}" for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(incr, keys))
    for key, reply in zip(keys, replies, strict=True):
        if key.endswith("-text"):
            assert isinstance(reply, redis.ResponseError)
        else:
            assert reply == 1


def test_a_script_flushed_from_redis_is_loaded_again(client):
    client, prefix = client
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    assert script([f"{prefix}-s"]) == 1
    client.script_flush()
    assert script([f"{prefix}-s"]) == 2


def test_a_silent_redis_fails_a_waiting_command_within_its_wait_timeout():
    """A server that accepts connections and never answers: every caller gets a timeout, within
    about the socket timeout plus its wait, not the sum of the round trips before it."""
    import socket
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    port = server.getsockname()[1]
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, socket_timeout=0.2, socket_connect_timeout=0.2,
                                retry=None)
    client = PipelinedRedis(connection_pool=pool, wait_timeout=0.3)
    started = time.monotonic()

    def ping(_: int) -> float:
        try:
            client.ping()
        except redis.RedisError:
            return time.monotonic() - started
        raise AssertionError("a silent server answered")

    try:
        with ThreadPoolExecutor(40) as workers:
            waited = list(workers.map(ping, range(40)))
    finally:
        server.close()
        pool.disconnect()
    assert max(waited) < 1.5, max(waited)


@pytest.mark.parametrize("broker_kind", ["redis"], indirect=True)  # the Redis broker's client
def test_the_web_process_broker_enqueues_through_it(settings):
    namespace = f"test-pipelining-{uuid.uuid4().hex[:8]}"
    broker = make_broker(settings, namespace=namespace, pipelined=True)
    try:
        assert isinstance(broker.client, PipelinedRedis)
        broker.declare_queue("bookings")
        for n in range(5):
            broker.enqueue(dramatiq.Message(queue_name="bookings", actor_name="noop", args=(n,), kwargs={},
                                            options={}))
        plain = redis.Redis.from_url(settings.redis_url)
        assert plain.llen(f"{namespace}:bookings") == 5
        for key in plain.scan_iter(f"{namespace}*"):
            plain.delete(key)
        plain.close()
    finally:
        broker.close()
