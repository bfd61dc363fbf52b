"""gunicorn settings for the web process: `gunicorn -c python:api.gunicorn_conf ...`.

The worker class is gevent's, with deadlines for slow clients and JSON errors
(api.gunicorn_worker). Chosen over the alternatives, measured on this machine (2 cores,
2 workers, 50 clients trickling headers or bodies a byte at a time, tests/e2e/test_slow_clients.py):

- sync (gunicorn's default): every other client waited until gunicorn killed the workers (30 s).
- gthread: a thread waits for a connection's first bytes in the poller, but from then on reads
  headers and body blocking; 50 slow clients need 50 threads, or wait in line behind them.
- a buffering proxy (nginx) in front: works, but Procfile platforms would run without it.
- gevent: each connection is a greenlet; the slow ones cost memory, not workers. psycopg 3 waits
  cooperatively once `select` is patched (it checks at import), redis-py uses patched sockets.

Each worker is its own process, so Prometheus metrics are kept in prometheus-client's
multiprocess files and summed at scrape time; a dead worker's files are marked dead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

worker_class = "api.gunicorn_worker.Worker"
# Connections (greenlets) per worker; each request still needs one of DB_POOL_SIZE connections.
worker_connections = 1000
# Kept-alive connections wait for their next request within REQUEST_HEADER_TIMEOUT_SECONDS;
# keepalive must not be 0, which would read the first request's headers without a deadline.
keepalive = 5
# gunicorn's defaults, answered 414 and 431 (in JSON, by the worker class).
limit_request_line = 4094
limit_request_field_size = 8190


def on_starting(server: Any) -> None:
    path = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bookings-prom-"))
    # Counters from a previous run of the server must not leak into this one.
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def when_ready(server: Any) -> None:
    if os.environ.get("METRICS_BIND", "").strip():
        # /metrics is then served there, by a process of its own (api/metrics_listener.py).
        server.metrics_listener = subprocess.Popen(
            [sys.executable, "-m", "api.metrics_listener"], stdin=subprocess.PIPE
        )


def on_exit(server: Any) -> None:
    listener = getattr(server, "metrics_listener", None)
    if listener is not None:
        listener.terminate()
        listener.wait(5)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
