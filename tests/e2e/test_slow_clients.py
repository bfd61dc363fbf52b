"""Slow clients against the API as production serves it: gunicorn with the project's config and
two workers (WEB_CONCURRENCY=2), on a loopback port.

A client that sends its headers or its body a byte at a time must not hold a worker that others
need, and must be cut once its deadline passes: unfinished headers are closed, a body that has
not arrived in time is answered 408 in JSON. The slow clients here trickle a byte every 0.3 s so
that only a deadline for the whole read can end them, not a timeout between two reads.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from db.engine import make_engine, make_sessions, transaction
from db.queries.clients import create_client

HEADER_TIMEOUT = 4.0
BODY_TIMEOUT = 4.0
TRICKLE_EVERY = 0.3


@pytest.fixture
def settings(settings):
    return dataclasses.replace(
        settings, request_header_timeout_seconds=HEADER_TIMEOUT, request_body_timeout_seconds=BODY_TIMEOUT,
    )


@pytest.fixture
def key(settings) -> str:
    engine = make_engine(settings.database_url, pool_size=1)
    with transaction(make_sessions(engine)) as session:
        key = create_client(session, "slow-clients")[1]
    engine.dispose()
    return key


class SlowClients:
    """Raw TCP connections that send a request a byte at a time from one background thread."""

    def __init__(self, base_url: str, key: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.key = key
        self.pending: list[tuple[socket.socket, bytes]] = []
        self.stopped = threading.Event()

    def open_unfinished_headers(self, count: int) -> list[socket.socket]:
        # The blank line that ends the headers never comes.
        head = f"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n".encode()
        return [self._open(head, b"X-Slow: " + b"a" * 10_000) for _ in range(count)]

    def open_slow_bodies(self, count: int) -> list[socket.socket]:
        body = json.dumps({"event_id": "00000000-0000-4000-8000-000000000000", "seat_ids": []}).encode()
        head = (
            f"POST /v1/bookings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
            f"Idempotency-Key: slow\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        return [self._open(head, body) for _ in range(count)]

    def _open(self, head: bytes, trickle: bytes) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=10)
        sock.sendall(head)
        self.pending.append((sock, trickle))
        return sock

    def trickle(self) -> None:
        while not self.stopped.wait(TRICKLE_EVERY):
            for index, (sock, rest) in enumerate(self.pending):
                if rest:
                    try:
                        sock.send(rest[:1])
                    except OSError:
                        rest = b""  # cut by the server: nothing more to send
                    self.pending[index] = (sock, rest[1:])

    @contextmanager
    def running(self) -> Iterator[SlowClients]:
        thread = threading.Thread(target=self.trickle, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopped.set()
            thread.join()
            for sock, _ in self.pending:
                sock.close()


def latencies(base_url: str, key: str, count: int) -> list[float]:
    """Seconds per `GET /v1/events`, each on a new connection, as a client that waits 2 s at most."""
    timings = []
    with httpx.Client(base_url=base_url, trust_env=False, timeout=2,
                      limits=httpx.Limits(max_keepalive_connections=0)) as http:
        for _ in range(count):
            started = time.perf_counter()
            answer = http.get("/v1/events", headers={"Authorization": f"Bearer {key}"})
            timings.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return timings


def p99(timings: list[float]) -> float:
    return statistics.quantiles(timings, n=100)[98]


def answer_of(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it only closes)."""
    sock.settimeout(within)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_fifty_slow_clients_leave_other_clients_latency_unchanged(stack, key):
    latencies(stack.base_url, key, 20)  # warm up both workers' connection pools
    baseline = latencies(stack.base_url, key, 200)
    with SlowClients(stack.base_url, key).running() as slow:
        slow.open_unfinished_headers(25)
        slow.open_slow_bodies(25)
        time.sleep(0.5)  # every slow connection accepted and mid-request
        attacked = latencies(stack.base_url, key, 200)
    print(f"p99 {p99(baseline) * 1000:.1f} ms alone, {p99(attacked) * 1000:.1f} ms beside 50 slow clients")
    assert p99(attacked) < max(10 * p99(baseline), 0.05)


def test_unfinished_headers_are_closed_at_the_header_deadline(stack, key):
    with SlowClients(stack.base_url, key).running() as slow:
        [sock] = slow.open_unfinished_headers(1)
        started = time.monotonic()
        answer = answer_of(sock, within=HEADER_TIMEOUT + 5)
    assert answer == b""
    assert HEADER_TIMEOUT - 0.5 < time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_body_slower_than_the_body_deadline_is_cut_with_a_json_408(stack, key):
    with SlowClients(stack.base_url, key).running() as slow:
        [sock] = slow.open_slow_bodies(1)
        started = time.monotonic()
        answer = answer_of(sock, within=BODY_TIMEOUT + 5)
    assert BODY_TIMEOUT - 0.5 < time.monotonic() - started < BODY_TIMEOUT + 2
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"
