"""The METRICS_BIND listener: `python -m api.metrics_listener`, started by gunicorn's master.

A process of its own rather than a thread of the master: importing psycopg in the master,
before the workers patch `select` for gevent, would make every worker's queries block. It
reads the workers' multiprocess files (PROMETHEUS_MULTIPROC_DIR, inherited) and exits when the
master does: its standard input is a pipe from the master, which closes when the master goes.
"""

from __future__ import annotations

import sys

from api.metrics import serve_metrics
from config.logging import configure_logging
from config.settings import Settings


def main() -> None:
    configure_logging("metrics")
    serve_metrics(Settings.from_env())
    sys.stdin.buffer.read()  # returns at end of file: the master is gone


if __name__ == "__main__":
    main()
