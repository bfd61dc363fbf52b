"""What the pipeline benchmarks share: a large seat catalog made in SQL, API keys, the stack of
processes (gunicorn, Dramatiq workers) started as in production, and waiting for bookings to settle.

    with bench_environment() as env:
        arena = add_arena(env.database_url, seats=20_000, events=3)
        keys = create_keys(env.database_url, 4)
        with Stack(env, root) as stack:
            stack.start_web()
            stack.start_workers(processes=2, threads=8, payments="none")
            ...

Seat ids of the arena are computable from their index (`seat_uuid(n)`), so pgbench scripts and
wrk's Lua can name distinct seats without a lookup.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

import httpx
import psycopg
import redis

from bench.environment import LOCAL, ROOT, BenchEnvironment
from devtools.local_services import free_port, spawn, terminate, wait_until_ready
from domain import lifecycle

#: Charts, figures and the generated pgbench scripts (git-ignored).
RESULTS = ROOT / "bench" / "results"
SEAT_PREFIX = "b5ea7000-0000-4000-8000-"
#: Settled statuses (domain.lifecycle.SETTLED): the placement is over, the client has its answer.
SETTLED = tuple(str(status) for status in lifecycle.SETTLED)
Payments = Literal["stripe", "none"]
#: The worker module each payment mode runs under `dramatiq` (what `bookings worker` runs).
WORKER_MODULES: dict[str, str] = {"stripe": "tasks.worker", "none": "bench.nopay_worker"}
#: Limits far above anything a benchmark sends: measure the limiter's cost, never its refusals.
# The load comes from one address, so the per-address budget for unvouched requests is lifted too.
NO_RATE_LIMITS = "writes=10000000/second;reads=10000000/second;webhooks=10000000/second;anonymous=10000000/second"


def seat_uuid(index: int) -> str:
    return f"{SEAT_PREFIX}{index:012x}"


def seat_uuid_sql(expr: str) -> str:
    """The SQL expression for `seat_uuid(<expr>)`."""
    return f"('{SEAT_PREFIX}' || lpad(to_hex(({expr})::bigint), 12, '0'))::uuid"


#: The arena's seat n is in row 'R' || n / 100, number n % 100 (see `make_arena`).
SEAT_ROW_SQL = "'R' || (({expr})::bigint / 100)"
SEAT_NUMBER_SQL = "(({expr})::bigint % 100)::integer"


@dataclass(frozen=True)
class Arena:
    venue_id: uuid.UUID
    event_ids: list[uuid.UUID]
    seats: int
    price: int = 5000

    def seat(self, index: int) -> str:
        return seat_uuid(index)


def add_arena(database_url: str, *, seats: int, events: int = 1, price: int = 5000) -> Arena:
    """A venue of `seats` seats (one tier) with `events` events: thousands of distinct seats."""
    venue_id = uuid.uuid4()
    event_ids = [uuid.uuid4() for _ in range(events)]
    starts = datetime.now(UTC) + timedelta(days=60)
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO venues (id, name, city) VALUES (%s, %s, 'Berlin')",
                     (venue_id, f"Bench Arena {venue_id.hex[:8]}"))
        conn.execute(
            f"INSERT INTO seats (id, venue_id, row, number, tier) SELECT {seat_uuid_sql('n')}, %s,"
            f" {SEAT_ROW_SQL.format(expr='n')}, {SEAT_NUMBER_SQL.format(expr='n').replace('%', '%%')}, 'standard'"
            " FROM generate_series(0, %s - 1) AS n",
            (venue_id, seats),
        )
        for i, event_id in enumerate(event_ids):
            conn.execute(
                "INSERT INTO events (id, venue_id, name, starts_at, ends_at, currency, sales_start_at, sales_end_at)"
                " VALUES (%s, %s, %s, %s, %s, 'EUR', now(), %s)",
                (event_id, venue_id, f"Bench night {i}", starts + timedelta(days=i),
                 starts + timedelta(days=i, hours=3), starts + timedelta(days=i)),
            )
            conn.execute("INSERT INTO event_prices (event_id, tier, amount) VALUES (%s, 'standard', %s)",
                         (event_id, price))
        conn.execute("ANALYZE seats; ANALYZE events; ANALYZE event_prices")
    return Arena(venue_id, event_ids, seats, price)


def create_keys(database_url: str, count: int) -> list[str]:
    """`count` API client keys (each with its own client id)."""
    from db.engine import make_engine, make_sessions, transaction
    from db.queries.clients import create_client

    engine = make_engine(database_url, pool_size=1)
    try:
        with transaction(make_sessions(engine)) as session:
            return [create_client(session, f"bench-{uuid.uuid4().hex[:8]}")[1] for _ in range(count)]
    finally:
        engine.dispose()


def seat_body(event_id: uuid.UUID | str, seat_id: str, *, payment_method: str | None = "pm_card_visa") -> dict[str, Any]:
    """What `tests.support.seat_request` sends (kept here so the bench runs without the tests)."""
    payment: dict[str, Any] = {"mode": "card", "capture": "on_confirm"}
    if payment_method is not None:
        payment["payment_method"] = payment_method
    return {"event_id": str(event_id), "seat_ids": [seat_id],
            "customer": {"email": "ada@example.com", "name": "Ada"}, "payment": payment}


@dataclass
class Stack:
    """gunicorn and Dramatiq workers over a bench environment, started as the Procfile does."""

    env: BenchEnvironment
    root: Path = field(default_factory=lambda: LOCAL / "runs" / uuid.uuid4().hex[:8])
    log_level: str = "INFO"  # the production default
    web_workers: int = 2
    # gunicorn's worker class when not the project's (api.gunicorn_conf): to measure alternatives.
    worker_class: str | None = None
    db_pool_size: int = 10
    namespace: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.web: Any = None
        self.workers: list[Any] = []
        self.port = 0
        self.worker_count = 0
        self.stripe_url = self.env.stripe_url
        self._stripe: Any = None

    def fresh_stripe(self) -> str:
        """A new, empty local Stripe server for the next workers.

        Upstream localstripe's PaymentIntent create found the charge's refunds by scanning every
        object it holds, so its rate fell with its size (about 400/s empty, 95/s after 2,000
        intents). The index in devtools/localstripe_additions.py removed that (0.82-0.90 ms of
        its CPU per create+confirm from 0 to 4,000 intents); each run still starts from an empty
        one so that no run depends on what an earlier one left.
        """
        from devtools.local_services import start_localstripe

        if self._stripe is not None:
            self._stripe.stop()
        self._stripe = start_localstripe(log_dir=self.root)
        self.stripe_url = self._stripe.url
        return self.stripe_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.env.database_url, "REDIS_URL": self.env.redis_url,
            "STRIPE_API_BASE": self.stripe_url, "STRIPE_API_KEY": "sk_test_bench",
            "BROKER_NAMESPACE": self.namespace, "RATE_LIMITS": NO_RATE_LIMITS,
            # Measure the pipeline, not the Stripe budget (bench.event_cancellation sets its own).
            "STRIPE_MAX_REQUESTS_PER_SECOND": "0",
            "DB_POOL_SIZE": str(self.db_pool_size), "LOG_LEVEL": self.log_level, "PYTHONUNBUFFERED": "1",
            # Nothing here should expire or be relayed while we measure.
            "OUTBOX_RELAY_AFTER_SECONDS": "3600", "BOOKING_HOLD_TTL_SECONDS": "3600",
            "PROMETHEUS_MULTIPROC_DIR": str(self.root / "prom-web"),
            "dramatiq_prom_db": str(self.root / "prom-worker"), "dramatiq_prom_host": "127.0.0.1",
            **self.extra_env,
        }

    def start_web(self, app: str = "api.wsgi:create()", *, workers: int | None = None) -> None:
        """`gunicorn APP` with the Procfile's settings (the project's gunicorn_conf: gevent workers)."""
        self.stop_web()
        self.port = free_port()
        log = self.root / f"web-{self.port}.log"
        self.web = spawn(
            [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(workers or self.web_workers), "--no-control-socket", "-c", "python:api.gunicorn_conf",
             *(["--worker-class", self.worker_class] if self.worker_class else [])],
            log=log, env=self.environ(),
        )
        wait_until_ready(self._answers, what="gunicorn", process=self.web, log=log)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1, trust_env=False).status_code < 500
        except httpx.HTTPError:
            return False

    def stop_web(self) -> None:
        if self.web is not None:
            terminate(self.web)
            self.web = None

    def start_workers(self, processes: int, threads: int, payments: Payments, *, keep_stripe: bool = False) -> None:
        """`dramatiq <module> --processes N --threads T` (what `bookings worker` execs); Stripe
        workers get a fresh local Stripe server unless `keep_stripe` (its intents are the run's)."""
        self.stop_workers()
        if payments == "stripe" and not keep_stripe:
            self.fresh_stripe()
        env = {**self.environ(), "dramatiq_prom_port": str(free_port())}
        log = self.root / f"worker-{payments}-{processes}x{threads}-{uuid.uuid4().hex[:4]}.log"
        process = spawn([sys.executable, "-m", "dramatiq", WORKER_MODULES[payments], "--processes", str(processes),
                         "--threads", str(threads)], log=log, env=env)
        self.workers = [process]
        self.worker_count = processes
        since_ms = int(time.time() * 1000)
        wait_until_ready(lambda: self.live_consumers(since_ms) >= processes, what="dramatiq workers",
                         process=process, log=log, timeout=60)

    def kill_workers(self) -> None:
        """SIGKILL the workers' whole process group, the dramatiq parent and its children, mid-work."""
        import signal

        for process in self.workers:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.workers, self.worker_count = [], 0

    @property
    def uses_rabbitmq(self) -> bool:
        return self.extra_env.get("BROKER_URL", "").startswith("amqp")

    def live_consumers(self, since_ms: int) -> int:
        """Broker processes that talked to Redis since `since_ms` (an idle consumer polls every second).

        Only worker processes talk to this namespace while no request comes in. On RabbitMQ: the
        worker processes connected to it.
        """
        if self.uses_rabbitmq:
            return len(rabbitmq_consumers(self.workers[0].pid)) if self.workers else 0
        client = redis.Redis.from_url(self.env.redis_url)
        try:
            return int(client.zcount(f"{self.namespace}:__heartbeats__", since_ms, "+inf"))
        finally:
            client.close()

    def stop_workers(self) -> None:
        for process in self.workers:
            terminate(process)
        self.workers = []
        if self.worker_count:
            time.sleep(0.2)
        self.worker_count = 0

    def close(self) -> None:
        self.stop_workers()
        self.stop_web()
        if self.uses_rabbitmq:
            from config.settings import Settings
            from tasks.broker import make_broker

            broker = make_broker(Settings.from_env(self.environ()))
            broker.delete_queues()  # type: ignore[attr-defined]
            broker.close()
        if self._stripe is not None:
            self._stripe.stop()
            self._stripe = None
        self._forget_namespace()

    def _forget_namespace(self) -> None:
        """The run's Redis keys (queues, heartbeats, rate limits): the configured Redis may be a
        shared one, and a run that accepted bookings no worker drained leaves its queue full."""
        client = redis.Redis.from_url(self.env.redis_url)
        try:
            keys = list(client.scan_iter(f"{self.namespace}*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start:start + 500])
        finally:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def settled_times(database_url: str, booking_ids: Iterable[str]) -> dict[str, tuple[str, float]]:
    """booking id -> (status, epoch seconds of its first settled transition), for settled ones."""
    ids = list(booking_ids)
    if not ids:
        return {}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT b.id::text, b.status, min(t.at) FROM bookings b JOIN booking_transitions t"
            " ON t.booking_id = b.id AND t.to_status = ANY(%s) WHERE b.id = ANY(%s::uuid[])"
            " GROUP BY b.id, b.status",
            (list(SETTLED), ids),
        ).fetchall()
    return {r[0]: (r[1], r[2].timestamp()) for r in rows}


def wait_settled(database_url: str, booking_ids: Sequence[str], *, timeout: float, interval: float = 0.1) -> int:
    """Wait (one cheap count per `interval`) until every booking is settled; returns how many are."""
    deadline = time.monotonic() + timeout
    settled = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            settled = conn.execute("SELECT count(*) FROM bookings WHERE id = ANY(%s::uuid[]) AND status = ANY(%s)",
                                   (list(booking_ids), list(SETTLED))).fetchone()[0]
            if settled >= len(booking_ids) or time.monotonic() > deadline:
                return int(settled)
            time.sleep(interval)


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def pct(ratio: float) -> str:
    return f"{ratio:.0%}"


# ---------------------------------------------------------------------------------------------
# Where the CPU went: seconds of CPU per component over a measured interval (from /proc).

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far, with its reaped children's).

    The children's share counts what ran and exited between two samples: pgbench, and the
    PostgreSQL backends of its connections (reaped by the postmaster).
    """
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK)
    return table


def _tree_cpu(table: dict[int, tuple[int, float]], root: int, stop_at: frozenset[int] = frozenset()) -> float:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
        todo.extend(child for child in children.get(pid, []) if child not in stop_at)
    return total


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all processes, ours or not)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def rabbitmq_consumers(root: int) -> list[int]:
    """Processes under `root` connected to RabbitMQ (the Dramatiq worker processes)."""
    import psutil

    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            if any(c.raddr and c.raddr.port == 5672 for c in child.net_connections(kind="tcp")):
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def server_pids(env: BenchEnvironment) -> dict[str, int]:
    """PostgreSQL's postmaster (its backends count with it) and Redis, where they can be found."""
    pids: dict[str, int] = {}
    try:
        with psycopg.connect(env.database_url) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            pids["postgresql"] = _proc_table()[backend][0]  # the postmaster (while the backend lives)
    except (psycopg.Error, KeyError):
        pass
    try:
        client = redis.Redis.from_url(env.redis_url)
        pids["redis"] = int(client.info("server")["process_id"])
        client.close()
    except redis.RedisError:
        pass
    return pids


def component_pids(stack: Stack) -> dict[str, int]:
    """The root process of each component: its descendants count with it."""
    pids: dict[str, int] = {}
    if stack.web is not None:
        pids["api (gunicorn)"] = stack.web.pid
    if stack.workers:
        pids["workers (dramatiq)"] = stack.workers[0].pid
    pids.update(server_pids(stack.env))
    port = stack.stripe_url.rsplit(":", 1)[-1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"devtools.localstripe_server" in cmdline and port.encode() in cmdline:
                pids["localstripe"] = int(entry.name)
            if stack.uses_rabbitmq and cmdline[0].endswith(b"beam.smp") and b"rabbit" in b" ".join(cmdline):
                pids["rabbitmq"] = int(entry.name)  # the machine's RabbitMQ: its CPU is ours while we run
    return pids


class CpuMeter:
    """CPU seconds per component between `start()` and `stop()`; the rest of the machine too."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.wall = 0.0

    def _sample(self) -> dict[str, float]:
        table = _proc_table()
        sample = {name: _tree_cpu(table, pid) for name, pid in self.pids.items()}
        # This process and its load-generating child, without the servers it started.
        sample["bench (load generator)"] = _tree_cpu(table, os.getpid(), frozenset(self.pids.values()))
        sample["machine"] = _machine_busy()
        return sample

    def start(self) -> None:
        self.before, self.wall = self._sample(), time.monotonic()

    def stop(self) -> None:
        after = self._sample()
        self.wall = time.monotonic() - self.wall
        self.used = {name: after.get(name, 0.0) - before for name, before in self.before.items()}

    def row(self) -> dict[str, float]:
        """Cores busy per component (CPU seconds / wall seconds)."""
        return {name.split(" ")[0]: cpu / self.wall for name, cpu in self.used.items()} if self.wall else {}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per component (\"machine\": busy seconds of all cores)."""
        return {name.split(" ")[0]: cpu for name, cpu in self.used.items()}
