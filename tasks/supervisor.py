"""`bookings worker`: Dramatiq's worker processes, started again within a second when one dies.

Dramatiq's parent process stops every worker and exits as soon as one of them dies (a SIGKILL,
the OOM killer) and leaves restarting to someone else: this supervisor. It imports the
application once, before forking, so a restarted worker only connects instead of spending a
second or two importing while its queues wait. The killed worker's messages come back through
`tasks.redelivery`.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger(__name__)

#: What a worker process imports; loaded here once, each fork inherits it.
PRELOAD = ("dramatiq.cli", "dramatiq.middleware.prometheus", "tasks.runtime")

#: A Dramatiq that exits sooner than this after starting exited early. A few early exits in a
#: row are restarted at once (a worker killed twice in a minute must come back just as fast);
#: more mean it cannot start (a bad setting, Redis down), and each next start waits longer.
HEALTHY_AFTER_SECONDS = 10.0
QUICK_RESTARTS = 3
MAX_BACKOFF_SECONDS = 30.0


def supervise(dramatiq_args: Sequence[str], *, metrics_at: tuple[str, int] | None = None) -> int:
    """Run `dramatiq <dramatiq_args>` until SIGTERM or SIGINT; returns its last exit code.

    `metrics_at` is where Dramatiq's exposition server listens (tasks.worker adds the
    middleware only then): Dramatiq reads the address once, when its module is first imported.

    SIGHUP restarts the workers gracefully. SIGTERM is passed on; SIGINT is not, because
    Ctrl-C at a terminal reaches Dramatiq's processes directly and a second signal would make
    its workers quit without finishing their messages.
    """
    if metrics_at is not None:
        os.environ["dramatiq_prom_host"], os.environ["dramatiq_prom_port"] = metrics_at[0], str(metrics_at[1])
    for module in PRELOAD:
        importlib.import_module(module)
    # Plain variables: a signal handler must not take the locks a threading.Event would.
    stopping, child, early_exits = False, 0, 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = stopping or signum != signal.SIGHUP
        if child and signum != signal.SIGINT:
            os.kill(child, signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    while True:
        started = time.monotonic()
        child = _start_dramatiq(dramatiq_args)
        if stopping:  # the signal came between the fork and the line above
            os.kill(child, signal.SIGTERM)
        code = _wait(child)
        child = 0
        if stopping:
            return code
        early_exits = 0 if time.monotonic() - started >= HEALTHY_AFTER_SECONDS else early_exits + 1
        backoff = _backoff(early_exits)
        log.warning("dramatiq exited with %s; starting it again in %.1f s", code, backoff)
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            return code


def _backoff(early_exits: int) -> float:
    if early_exits <= QUICK_RESTARTS:
        return 0.0
    return float(min(2 ** (early_exits - QUICK_RESTARTS - 1), MAX_BACKOFF_SECONDS))


def _start_dramatiq(dramatiq_args: Sequence[str]) -> int:
    pid = os.fork()
    if pid:
        return pid
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    code = 1
    try:
        from dramatiq.cli import main, make_argument_parser

        code = main(make_argument_parser().parse_args(list(dramatiq_args)))  # type: ignore[no-untyped-call]
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except Exception:
        log.exception("dramatiq failed to start")
    finally:
        # os._exit skips multiprocessing's exit hook: stop Dramatiq's helper processes (the
        # metrics server) ourselves, or the next start finds its port taken.
        for helper in multiprocessing.active_children():
            helper.terminate()
            helper.join(5)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
