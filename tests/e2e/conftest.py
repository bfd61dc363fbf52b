"""The running stack as processes: gunicorn serving the API, `bookings worker` (Dramatiq)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.local_services import free_port, spawn, terminate, wait_until_ready
from tests.conftest import LOCAL


@dataclass
class Stack:
    env: dict[str, str]
    base_url: str
    logs: Path
    web: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, *, processes: int = 1, threads: int = 8) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "cli.main", "worker", "--processes", str(processes), "--threads", str(threads)]
        process = spawn(cmd, log=self.logs / f"worker-{len(self.workers)}.log", env=self.env)
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker's whole process group: the dramatiq parent and its children."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in [*self.workers, *([self.web] if self.web else [])]:
            terminate(process)


@pytest.fixture
def stack(settings: Any, tmp_path: Path) -> Iterator[Stack]:
    from sqlalchemy import text

    from db.engine import make_engine
    from tests.integration.conftest import BOOKING_TABLES

    def truncate() -> None:
        engine = make_engine(settings.database_url, pool_size=1)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {BOOKING_TABLES} CASCADE"))
        engine.dispose()

    truncate()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "BROKER_URL": settings.broker_url,  # empty: Redis, whatever the caller's environment says
        "STRIPE_API_BASE": settings.stripe_api_base,
        "STRIPE_API_KEY": settings.stripe_api_key,
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "BROKER_NAMESPACE": f"bookings-e2e-{uuid.uuid4().hex[:10]}",
        # Short enough that a killed worker's messages come back within seconds in the test.
        "BROKER_HEARTBEAT_TIMEOUT_MS": "3000",
        "BROKER_MAINTENANCE_CHANCE": "200000",
        "PAYMENT_STEP_LEASE_SECONDS": "3",
        "PYTHONUNBUFFERED": "1",
        "RATE_LIMITS": settings.rate_limits,
        "STRIPE_MAX_REQUESTS_PER_SECOND": str(settings.stripe_max_requests_per_second),
        "TRUSTED_PROXY_HEADER": settings.trusted_proxy_header,
        "REQUEST_HEADER_TIMEOUT_SECONDS": str(settings.request_header_timeout_seconds),
        "REQUEST_BODY_TIMEOUT_SECONDS": str(settings.request_body_timeout_seconds),
        # Each stack its own metrics files and listeners: the API's without a key, the workers'.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom-web"),
        "dramatiq_prom_db": str(tmp_path / "prom-worker"),
        "METRICS_BIND": f"127.0.0.1:{free_port()}",
        "WORKER_METRICS_BIND": f"127.0.0.1:{free_port()}",
    }
    logs = LOCAL / "e2e" / uuid.uuid4().hex[:8]
    stack = Stack(env=env, base_url=f"http://127.0.0.1:{port}", logs=logs)
    stack.web = spawn(
        [sys.executable, "-m", "gunicorn", "api.wsgi:create()", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--no-control-socket", "-c", "python:api.gunicorn_conf"],
        log=logs / "web.log", env=env,
    )
    wait_until_ready(lambda: _answers(stack.base_url), what="gunicorn", process=stack.web, log=logs / "web.log")
    try:
        yield stack
    finally:
        stack.stop()
        # The processes committed: the next test, rolled back or not, starts from the seeded catalog.
        truncate()
        if settings.uses_rabbitmq:
            _delete_queues(env)


def _delete_queues(env: dict[str, str]) -> None:
    from config.settings import Settings
    from tasks.broker import make_broker

    broker = make_broker(Settings.from_env(env))
    broker.delete_queues()  # type: ignore[attr-defined]
    broker.close()


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False
