"""gunicorn settings for the web process: `gunicorn -c python:api.gunicorn_conf ...`.

Each worker is its own process, so Prometheus metrics are kept in prometheus-client's
multiprocess files and summed at scrape time; a dead worker's files are marked dead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any


def on_starting(server: Any) -> None:
    path = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bookings-prom-"))
    # Counters from a previous run of the server must not leak into this one.
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
