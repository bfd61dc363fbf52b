"""Module for the `dramatiq` command line: `dramatiq tasks.worker` (what `bookings worker` runs).

Dramatiq imports this module in every worker process and takes the broker that is set when
the import finishes, so this is the one place where a broker is built at import time.
"""

from __future__ import annotations

import dramatiq

from config.settings import Settings
from tasks.runtime import build_worker

runtime = build_worker(Settings.from_env())
dramatiq.set_broker(runtime.broker)
broker = runtime.broker
