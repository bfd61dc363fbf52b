"""/readyz answers within a second, whatever state PostgreSQL and Redis are in.

The dependencies that are down are real sockets: a port bound by nobody listening (the
connection is refused at once) and a port that listens but never answers (the connection
hangs, as a server stuck or behind a dropped route does).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import falcon.testing
import pytest
import redis

from api.app import create_app

#: What an orchestrator's probe may wait: the answer must come well within it.
PROBE_SECONDS = 1.0


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound and not listening: connections to it are refused, and nobody can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def readiness(runtime: Any, **settings_changes: str) -> tuple[falcon.testing.Result, float]:
    """GET /readyz of an app built with the given settings, and how long the answer took."""
    settings = replace(runtime.context.settings, **settings_changes)
    app_redis = redis.Redis.from_url(settings.redis_url)
    client = falcon.testing.TestClient(create_app(replace(runtime.context, settings=settings), redis_client=app_redis))
    started = time.monotonic()
    answer = client.simulate_get("/readyz")
    return answer, time.monotonic() - started


def test_readiness_reports_dependencies(app):
    ready = app.simulate_get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"postgresql": "ok", "redis": "ok"}


def test_readiness_names_redis_when_nothing_listens_there(runtime, refusing_port):
    answer, took = readiness(runtime, redis_url=f"redis://127.0.0.1:{refusing_port}/0")

    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert answer.json["checks"] == {"postgresql": "ok", "redis": "down"}
    assert took < PROBE_SECONDS


def test_readiness_names_postgresql_when_nothing_listens_there(runtime, refusing_port):
    answer, took = readiness(runtime, database_url=f"postgresql://postgres@127.0.0.1:{refusing_port}/bookings")

    assert answer.status_code == 503
    assert answer.json["checks"] == {"postgresql": "down", "redis": "ok"}
    assert took < PROBE_SECONDS


def test_readiness_does_not_wait_for_servers_that_never_answer(runtime, silent_port):
    answer, took = readiness(
        runtime, redis_url=f"redis://127.0.0.1:{silent_port}/0",
        database_url=f"postgresql://postgres@127.0.0.1:{silent_port}/bookings",
    )

    assert answer.status_code == 503
    assert answer.json["checks"] == {"postgresql": "down", "redis": "down"}
    assert took < PROBE_SECONDS


def test_liveness_does_not_depend_on_either(runtime, refusing_port):
    settings = replace(runtime.context.settings, redis_url=f"redis://127.0.0.1:{refusing_port}/0",
                       database_url=f"postgresql://postgres@127.0.0.1:{refusing_port}/bookings")
    app = create_app(replace(runtime.context, settings=settings), redis_client=redis.Redis.from_url(settings.redis_url))
    assert falcon.testing.TestClient(app).simulate_get("/healthz").status_code == 200
