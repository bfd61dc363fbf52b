"""A worker process SIGKILLed mid-placement, with the production timings: its messages come
back and every accepted booking settles within 30 s, `bookings worker` has a new process
serving within 2 s, every booking is placed once, and no more messages run to completion twice
than the killed worker held, even under a backlog. On both brokers: Redis requeues a dead
worker's messages once its heartbeat is stale, RabbitMQ when its connection closes."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from sqlalchemy import text

from config.settings import Settings
from db.engine import make_engine, make_sessions, transaction
from db.queries.clients import create_client
from services import queues
from services.outbox import StagedMessage
from tasks.broker import make_broker, make_dispatcher, make_inspector
from testkit.processes import descends_from
from tests.support import (
    BOTH_BROKERS,
    first_event,
    seat_request,
    statuses,
    wait_for,
    wait_for_statuses,
)

pytestmark = pytest.mark.slow

#: The stack fixture shortens these for the other tests; here the defaults are what is measured.
PRODUCTION_TIMINGS = ("BROKER_HEARTBEAT_TIMEOUT_MS", "BROKER_MAINTENANCE_CHANCE", "PAYMENT_STEP_LEASE_SECONDS")


@BOTH_BROKERS
def test_bookings_in_flight_at_a_worker_kill_settle_within_30_s(stack, settings):
    for name in PRODUCTION_TIMINGS:
        stack.env.pop(name)
    sessions = make_sessions(make_engine(settings.database_url, pool_size=2))
    ids = _accept_bookings(stack, sessions, 50)
    supervisor = stack.start_worker(processes=1, threads=8)
    heartbeats = worker_processes(stack, settings)
    wait_for(lambda: sum(s != "requested" for s in statuses(sessions, ids).values()) >= 5,
             timeout=60, interval=0.005, what="the worker to settle a few bookings")

    (worker_id,) = heartbeats.of_descendants(supervisor.pid)
    os.kill(heartbeats.pid(worker_id), signal.SIGKILL)
    killed_at = time.monotonic()
    in_flight = heartbeats.fetched_bookings(worker_id)
    if in_flight is None:  # RabbitMQ does not say what a consumer holds: what was still unsettled
        in_flight = {b for b, s in statuses(sessions, ids).items() if s == "requested"}
    wait_for(lambda: heartbeats.of_descendants(supervisor.pid) - {worker_id}, timeout=10, interval=0.01,
             what="a new worker process")
    back_after = time.monotonic() - killed_at
    final = wait_for_statuses(sessions, ids, {"authorized"}, timeout=30)
    settled_after = time.monotonic() - killed_at

    print(f"\nworker back after {back_after:.2f} s; {len(in_flight)} bookings in flight at the kill;"
          f" all settled {settled_after:.1f} s after it")
    assert in_flight & {b for b in ids}, "the kill came too late to interrupt a placement"
    assert back_after < 2
    assert Counter(final.values()) == {"authorized": 50}
    # Each booking was placed once, whatever ran twice: its history leaves `requested` once.
    with transaction(sessions) as session:
        placed = Counter(str(b) for (b,) in session.execute(text(
            "SELECT booking_id FROM booking_transitions WHERE from_status = 'requested'"
            " AND booking_id = ANY(CAST(:ids AS uuid[]))"), {"ids": ids}))
    assert placed == Counter({b: 1 for b in ids})
    # At least once delivery: a run that ended just before the kill, its acknowledgement lost with
    # the process, runs again (a no-op). Only what the killed worker held can; the logs of a
    # SIGKILLed process may also miss its last lines, so runs are counted, not required.
    done = _completed_runs(stack.logs, queues.PLACE_BOOKING.actor_name)
    repeated = sum(runs - 1 for runs in done.values())
    assert repeated <= len(in_flight), (repeated, len(in_flight))


#: Placements of bookings that do not exist: each run is a quick no-op.
BACKLOG = 5_000
THREADS = 8


@BOTH_BROKERS
def test_a_backlog_is_not_doubled_by_redelivery_after_a_kill(stack, settings):
    broker = make_broker(Settings.from_env(stack.env))
    dispatch = make_dispatcher(broker)
    backlog = [StagedMessage(uuid.uuid4(), *queues.PLACE_BOOKING, (str(uuid.uuid4()),)) for _ in range(BACKLOG)]
    dispatch(backlog)  # placements of bookings that do not exist: each run is a quick no-op
    supervisor = stack.start_worker(processes=1, threads=THREADS)
    heartbeats = worker_processes(stack, settings)
    inspector = make_inspector(broker)

    def ready() -> int:
        return next(q.ready for q in inspector.depths() if q.name == queues.BOOKINGS)

    # Killed early in the backlog: most of it is still to run, so the kill interrupts work.
    wait_for(lambda: ready() < BACKLOG - 300, timeout=60, interval=0.005, what="the worker to be into the backlog")

    (worker_id,) = heartbeats.of_descendants(supervisor.pid)
    # What the worker holds: fetched, not finished (RabbitMQ cannot list it, only count it).
    held = BACKLOG - ready() - len(_completed_runs(stack.logs, queues.PLACE_BOOKING.actor_name))
    os.kill(heartbeats.pid(worker_id), signal.SIGKILL)
    fetched = heartbeats.fetched_bookings(worker_id)
    wait_for(lambda: len(_completed_runs(stack.logs, queues.PLACE_BOOKING.actor_name)) == BACKLOG,
             timeout=120, what="every message of the backlog to run")

    done = _completed_runs(stack.logs, queues.PLACE_BOOKING.actor_name)
    if settings.uses_rabbitmq:
        # RabbitMQ counts what a consumer holds but does not list it, and its count lags (CI once
        # read 2 where 5 ran twice): bound it by what the worker may hold unacknowledged, its
        # prefetch (Dramatiq's: twice its threads).
        held = max(held, 2 * THREADS)
    else:
        assert fetched or held > 0, "the kill came too late to interrupt anything"
    assert set(done) == {str(m.id) for m in backlog}
    repeated = sum(runs - 1 for runs in done.values())
    print(f"\n{held} messages held by the killed worker; {repeated} ran to completion twice")
    # Nothing doubles the backlog: the only messages that run twice are ones the killed worker
    # held, whose run ended before the kill and whose acknowledgement did not leave in time (at
    # least once delivery; every actor is idempotent).
    assert repeated <= held


def _accept_bookings(stack, sessions, count: int) -> list[str]:
    event_id, seats = first_event(sessions)
    with transaction(sessions) as session:
        key = create_client(session, "e2e")[1]
    with httpx.Client(base_url=stack.base_url, trust_env=False, timeout=10) as http:

        def submit(seat):
            return http.post("/v1/bookings", json=seat_request(event_id, [seat]),
                             headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex})

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(submit, seats[:count]))
    assert [r.status_code for r in responses] == [202] * count
    return [r.json()["id"] for r in responses]


def worker_processes(stack, settings) -> Heartbeats | RabbitmqConsumers:
    return RabbitmqConsumers() if settings.uses_rabbitmq else Heartbeats(stack)


class RabbitmqConsumers:
    """The Dramatiq worker processes below a `bookings worker`, found by their connections to
    RabbitMQ (ids are pids); what each has fetched is not visible over AMQP."""

    @staticmethod
    def pid(worker_id: str) -> int:
        return int(worker_id)

    def of_descendants(self, ancestor: int) -> set[str]:
        try:
            children = psutil.Process(ancestor).children(recursive=True)
        except psutil.NoSuchProcess:
            return set()
        return {str(p.pid) for p in children if self._connected(p)}

    @staticmethod
    def _connected(process: psutil.Process) -> bool:
        try:
            return any(c.raddr and c.raddr.port == 5672 and c.status == psutil.CONN_ESTABLISHED
                       for c in process.net_connections(kind="tcp"))
        except psutil.Error:
            return False

    def fetched_bookings(self, worker_id: str) -> set[str] | None:
        return None


class Heartbeats:
    """The broker's view of the worker processes: their heartbeats (ids `host-pid-random`) and
    the messages each has fetched and not acknowledged."""

    def __init__(self, stack) -> None:
        self.client = redis.Redis.from_url(stack.env["REDIS_URL"])
        self.ns = stack.env["BROKER_NAMESPACE"]

    @staticmethod
    def pid(worker_id: str) -> int:
        return int(worker_id.rsplit("-", 2)[-2])

    def of_descendants(self, ancestor: int) -> set[str]:
        fresh = self.client.zrangebyscore(f"{self.ns}:__heartbeats__", time.time() * 1000 - 1_000, "+inf")
        return {m.decode() for m in fresh if descends_from(self.pid(m.decode()), ancestor)}

    def fetched_bookings(self, worker_id: str) -> set[str] | None:
        booking_ids = set()
        for queue in (queues.BOOKINGS, queues.PAYMENTS):
            redis_ids = self.client.smembers(f"{self.ns}:__acks__.{worker_id}.{queue}")
            bodies = self.client.hmget(f"{self.ns}:{queue}.msgs", list(redis_ids)) if redis_ids else []
            booking_ids |= {json.loads(body)["args"][0] for body in bodies if body}
        return booking_ids




def _completed_runs(logs: Path, actor: str) -> Counter[str]:
    """Message ids of the actor's runs that ended (done or dead-lettered), from the workers' logs."""
    runs: Counter[str] = Counter()
    for path in logs.glob("worker-*.log"):
        for line in path.read_text(errors="replace").splitlines(keepends=True):
            # A line without its newline is still being written (or was cut by a kill): not yet a run.
            if not line.endswith("\n") or '"outcome"' not in line or actor not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line a SIGKILL cut, followed by the next process's
                continue
            if record.get("actor") == actor and record.get("outcome") in ("done", "dead_lettered"):
                runs[record["message_id"]] += 1
    return runs
