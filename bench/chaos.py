"""A fault campaign against the whole stack, then the invariants that must hold, as figures.

    python -m bench.chaos                      # the long form: 10,000 requests
    python -m bench.chaos --requests 400       # the short form CI runs (tests/e2e/test_chaos.py)

It starts its own PostgreSQL and Redis (they get restarted, so never the configured ones), the
local Stripe server behind a fault-injecting proxy, the API under gunicorn, several worker
processes and the scheduler. Concurrent clients then book overlapping seats and slots, confirm
and cancel, while the campaign SIGKILLs a random worker process every few seconds (`bookings
worker` starts a new one), restarts Redis once with its data gone, restarts PostgreSQL once, makes 10%
of Stripe calls fail, 5% lose their answer after Stripe acted and 5% slow, and delivers true
webhooks twice, late and out of order. When the load stops and the system drains, it checks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
import stripe

from bench.environment import LOCAL, print_table
from devtools.local_services import (
    LocalPostgres,
    LocalRedis,
    free_port,
    spawn,
    start_localstripe,
    start_postgres,
    start_redis,
    terminate,
    wait_until_ready,
)
from domain import lifecycle
from services import queues
from testkit.faults import FaultProxy, RandomFaults
from testkit.stripe_webhooks import sign

WEBHOOK_SECRET = "whsec_chaos_campaign"
SETTLED = tuple(str(status) for status in lifecycle.SETTLED)


@dataclass
class ChaosConfig:
    requests: int = 10_000
    clients: int = 16
    workers: int = 3
    seed: int = 7
    kill_every: float = 3.0
    drain_timeout: float = 300.0


@dataclass
class Observations:
    answers: list[tuple[float, str, int]] = field(default_factory=list)  # (time, what, status)
    accepted: set[str] = field(default_factory=set)
    outages: list[tuple[float, float]] = field(default_factory=list)  # PostgreSQL down, with grace
    kills: int = 0
    in_flight_at_kills: set[str] = field(default_factory=set)  # bookings whose placement a kill cut
    webhooks_sent: int = 0
    restarts: dict[str, bool] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, what: str, status: int) -> None:
        with self.lock:
            self.answers.append((time.monotonic(), what, status))


class Cluster:
    """Every process of the stack, started here so the campaign can kill and restart them."""

    def __init__(self, root: Path, config: ChaosConfig) -> None:
        self.root, self.config = root, config
        self.postgres: LocalPostgres = start_postgres(root / "pg", max_connections=300)
        self.redis: LocalRedis = start_redis(root / "redis")
        self.stripe = start_localstripe(log_dir=root)
        self.proxy = FaultProxy(self.stripe.url)
        self.database_url = self._create_database()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url,
            "STRIPE_API_BASE": self.proxy.url, "STRIPE_API_KEY": "sk_test_chaos",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "BROKER_NAMESPACE": "chaos",
            # The broker's heartbeat and the step lease keep their defaults: the time to settle
            # after a worker kill is measured as production would see it.
            "OUTBOX_RELAY_AFTER_SECONDS": "5",
            "RECONCILE_AFTER_SECONDS": "15", "SCHEDULE_RECONCILE_SECONDS": "10",
            "SCHEDULE_EXPIRE_SECONDS": "3", "SCHEDULE_RELAY_SECONDS": "3",
            # Short holds: seats come free again during the run, so payments keep flowing.
            "BOOKING_HOLD_TTL_SECONDS": "12",
            "RATE_LIMITS": "writes=100000/second;reads=100000/second;webhooks=100000/second",
            "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(root / "prom-web"), "dramatiq_prom_db": str(root / "prom-worker"),
            "dramatiq_prom_host": "127.0.0.1",
        }
        self.web = spawn(
            [sys.executable, "-m", "gunicorn", "api.wsgi:create()", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "2", "--no-control-socket", "-c", "python:api.gunicorn_conf"],
            log=root / "web.log", env=self.env,
        )
        wait_until_ready(self._answers, what="gunicorn", process=self.web, log=root / "web.log")
        self.workers = [self._start_worker(i) for i in range(config.workers)]
        self.scheduler = spawn([sys.executable, "-m", "cli.main", "scheduler"], log=root / "scheduler.log", env=self.env)
        # localstripe's own webhooks (payment_intent.succeeded / payment_failed) come to us too.
        httpx.post(f"{self.stripe.url}/_config/webhooks/chaos", trust_env=False, timeout=5,
                   data={"url": f"{self.base_url}/v1/webhooks/stripe", "secret": WEBHOOK_SECRET},
                   headers={"Authorization": "Bearer sk_test_chaos"})

    def _create_database(self) -> str:
        from db.provision import create_database, migrate_and_seed

        url = create_database(self.postgres.url, "chaos")
        migrate_and_seed(url)
        return url

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def _start_worker(self, index: int) -> Any:
        env = {**self.env, "dramatiq_prom_port": str(free_port())}
        return spawn([sys.executable, "-m", "cli.main", "worker", "--processes", "1", "--threads", "8"],
                     log=self.root / f"worker-{index}.log", env=env)

    def kill_worker_process(self, rng: random.Random) -> set[str] | None:
        """SIGKILL the worker process of a random `bookings worker`; returns the bookings whose
        placement it had fetched (None if that worker was between processes)."""
        supervisor = self.workers[rng.randrange(len(self.workers))]
        client = redis.Redis.from_url(self.redis.url)
        try:
            beating = client.zrangebyscore("chaos:__heartbeats__", time.time() * 1000 - 3_000, "+inf")
            ids = [m.decode() for m in beating if _descends_from(_pid_of(m.decode()), supervisor.pid)]
            if not ids:
                return None
            os.kill(_pid_of(ids[0]), signal.SIGKILL)
            return _fetched_placements(client, ids[0])
        except (redis.RedisError, ProcessLookupError):
            return None
        finally:
            client.close()

    def restart_postgres(self, observations: Observations, down_for: float = 3.0) -> None:
        started = time.monotonic()
        self.postgres.stop()
        time.sleep(down_for)
        self.postgres = start_postgres(self.root / "pg", max_connections=300)
        # Pools notice dead connections on their next checkout: allow a few seconds of grace.
        with observations.lock:
            observations.outages.append((started, time.monotonic() + 5.0))

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler, self.web]:
            terminate(process)
        self.proxy.stop()
        for server in (self.stripe, self.redis, self.postgres):
            server.stop()


def run(config: ChaosConfig, root: Path | None = None) -> dict[str, Any]:
    """Run the campaign; returns the figures (see `failures` for the broken invariants)."""
    root = root or LOCAL.parent / "chaos" / uuid.uuid4().hex[:8]
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    cluster = Cluster(root, config)
    observations = Observations()
    try:
        keys = _client_keys(cluster.database_url, config.clients)
        catalog = _catalog(cluster.database_url)
        cluster.proxy.random_faults = RandomFaults(error=0.10, lost=0.05, slow=0.05, seed=config.seed)
        stop = threading.Event()
        faults = threading.Thread(target=_faults, args=(cluster, observations, stop, rng, config), daemon=True)
        webhooks = threading.Thread(target=_webhooks, args=(cluster, observations, stop, rng), daemon=True)
        faults.start()
        webhooks.start()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=config.clients) as pool:
            share = [config.requests // config.clients + (i < config.requests % config.clients)
                     for i in range(config.clients)]
            list(pool.map(lambda i: _client(cluster, observations, keys[i], catalog, share[i], config.seed + i),
                          range(config.clients)))
        load_seconds = time.monotonic() - started
        stop.set()
        faults.join()
        webhooks.join()
        injected = dict(cluster.proxy.random_faults.counts)
        cluster.proxy.random_faults = None  # Stripe behaves while the system drains
        drained = _drain(cluster, observations, config.drain_timeout)
        figures = _check(cluster, observations)
        figures.update(settle_times_after_kills(cluster.database_url, observations.in_flight_at_kills))
        figures.update({
            "load seconds": round(load_seconds, 1), "drain seconds": round(drained, 1),
            "workers SIGKILLed": observations.kills, "webhooks delivered": observations.webhooks_sent,
            "Redis restarted empty / PostgreSQL restarted": " / ".join(
                "yes" if observations.restarts.get(s) else "no" for s in ("redis", "postgresql")),
            "Stripe calls failed / lost / slowed": f"{injected['error']} / {injected['lost']} / {injected['slow']}",
        })
        return figures
    finally:
        cluster.stop()


def _client_keys(database_url: str, count: int) -> list[str]:
    from db.engine import make_engine, make_sessions, transaction
    from db.queries.clients import create_client

    engine = make_engine(database_url, pool_size=1)
    with transaction(make_sessions(engine)) as session:
        keys = [create_client(session, f"chaos-{i}")[1] for i in range(count)]
    engine.dispose()
    return keys


def _catalog(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        event_id, venue_id = conn.execute("SELECT id, venue_id FROM events ORDER BY starts_at LIMIT 1").fetchone()
        seats = [r[0] for r in conn.execute(
            "SELECT id FROM seats WHERE venue_id = %s ORDER BY row, number", (venue_id,))]
        resources = [r[0] for r in conn.execute("SELECT id FROM resources ORDER BY name LIMIT 3")]
    day = (datetime.now(UTC) + timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
    return {"event_id": str(event_id), "seats": [str(s) for s in seats], "resources": [str(r) for r in resources],
            "day": day}


def _request(rng: random.Random, catalog: dict[str, Any]) -> dict[str, Any]:
    roll = rng.random()
    method = "pm_card_chargeCustomerFail" if roll < 0.05 else "pm_card_visa"
    payment = {"mode": "card", "payment_method": method, "capture": "immediate" if roll > 0.95 else "on_confirm"}
    customer = {"email": "chaos@example.com"}
    if rng.random() < 0.7:
        seats = rng.sample(catalog["seats"], rng.choice((1, 1, 2)))
        return {"event_id": catalog["event_id"], "seat_ids": seats, "customer": customer, "payment": payment}
    start = catalog["day"] + timedelta(minutes=30 * rng.randrange(16))
    return {"resource_id": rng.choice(catalog["resources"]), "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=rng.choice((30, 60, 90)))).isoformat(),
            "customer": customer, "payment": payment}


def _client(cluster: Cluster, observations: Observations, key: str, catalog: dict[str, Any], count: int, seed: int) -> None:
    """A well-behaved client: retries a failed POST with the same Idempotency-Key, then acts."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=cluster.base_url, trust_env=False, timeout=15) as http:
        for _ in range(count):
            answer = _post(http, observations, "/v1/bookings", _request(rng, catalog), headers)
            if answer is None or answer.status_code != 202:
                continue
            booking_id = answer.json()["id"]
            with observations.lock:
                observations.accepted.add(booking_id)
            action = rng.random()
            if action < 0.3:
                _later(http, observations, headers, booking_id, "confirm")
            elif action < 0.4:
                _later(http, observations, headers, booking_id, "cancel")


def _post(http: httpx.Client, observations: Observations, path: str, body: Any, headers: dict[str, str]) -> httpx.Response | None:
    key = uuid.uuid4().hex
    for attempt in range(20):
        try:
            answer = http.post(path, json=body, headers={**headers, "Idempotency-Key": key})
        except httpx.HTTPError:
            observations.answer(path, 0)
            time.sleep(min(0.2 * 2 ** attempt, 3))
            continue
        observations.answer(path.rsplit("/", 1)[-1] if "/bookings/" in path else path, answer.status_code)
        if answer.status_code < 500 and answer.status_code != 429:
            return answer
        time.sleep(min(0.2 * 2 ** attempt, 3))
    return None


def _later(http: httpx.Client, observations: Observations, headers: dict[str, str], booking_id: str, action: str) -> None:
    for _ in range(40):
        try:
            status = http.get(f"/v1/bookings/{booking_id}", headers=headers).json().get("status")
        except (httpx.HTTPError, ValueError):
            time.sleep(0.25)
            continue
        if status != "requested" and status != "awaiting_payment":
            break
        time.sleep(0.1)
    if action == "confirm" and status != "authorized":
        return
    _post(http, observations, f"/v1/bookings/{booking_id}/{action}", None, headers)


def _faults(cluster: Cluster, observations: Observations, stop: threading.Event, rng: random.Random,
            config: ChaosConfig) -> None:
    """A worker killed every few seconds; Redis restarted empty a quarter of the way through the
    requests, PostgreSQL restarted half way."""
    redis_done = postgres_done = False
    last_kill = time.monotonic()
    while not stop.wait(0.2):
        progress = len(observations.accepted) / config.requests
        if not redis_done and progress >= 0.25:
            cluster.redis.restart(flush=True)  # everything queued in Redis is gone
            redis_done = True
        elif redis_done and not postgres_done and progress >= 0.5:
            cluster.restart_postgres(observations)
            postgres_done = True
        if time.monotonic() - last_kill >= config.kill_every:
            in_flight = cluster.kill_worker_process(rng)
            if in_flight is not None:
                observations.kills += 1
                observations.in_flight_at_kills |= in_flight
            last_kill = time.monotonic()
    observations.restarts = {"redis": redis_done, "postgresql": postgres_done}


def _webhooks(cluster: Cluster, observations: Observations, stop: threading.Event, rng: random.Random) -> None:
    """True events about real intents, each sent twice, some late, in shuffled order."""
    client = stripe.StripeClient("sk_test_chaos", base_addresses={"api": cluster.stripe.url})
    pending: list[tuple[float, dict[str, Any]]] = []
    with httpx.Client(base_url=cluster.base_url, trust_env=False, timeout=10) as http:
        while not stop.wait(1.0):
            try:
                intents = [pi.to_dict() for pi in client.v1.payment_intents.list(params={"limit": 20})]
            except stripe.StripeError:
                continue
            for intent in rng.sample(intents, min(4, len(intents))):
                event = _true_event(intent)
                if event is not None:
                    for _ in range(2):
                        pending.append((time.monotonic() + rng.choice((0, 0, 2, 5)), event))
            rng.shuffle(pending)
            due = [e for at, e in pending if at <= time.monotonic()]
            pending = [(at, e) for at, e in pending if at > time.monotonic()]
            for event in due:
                body = json.dumps(event).encode()
                try:
                    answer = http.post("/v1/webhooks/stripe", content=body, headers={
                        "Stripe-Signature": sign(body, WEBHOOK_SECRET), "Content-Type": "application/json"})
                    observations.answer("webhook", answer.status_code)
                    observations.webhooks_sent += 1
                except httpx.HTTPError:
                    observations.answer("webhook", 0)


def _true_event(intent: dict[str, Any]) -> dict[str, Any] | None:
    kind = {"requires_capture": "payment_intent.amount_capturable_updated", "succeeded": "payment_intent.succeeded",
            "canceled": "payment_intent.canceled"}.get(intent["status"])
    if kind is None:
        return None
    if kind.endswith("capturable_updated"):
        intent = {**intent, "amount_capturable": intent["amount"]}
    return {"id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "type": kind, "created": int(time.time()),
            "livemode": False, "data": {"object": intent}}


def _drain(cluster: Cluster, observations: Observations, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _unsettled(cluster.database_url) == 0:
            return time.monotonic() - started
        time.sleep(1)
    return time.monotonic() - started


def _unsettled(database_url: str) -> int:
    try:
        with psycopg.connect(database_url) as conn:
            return conn.execute(
                "SELECT count(*) FROM bookings b JOIN payments p ON p.booking_id = b.id WHERE"
                # A running hold ('authorized') still ends on its own (the sweep expires it, then voids
                # at Stripe); _check lists Stripe before it reads the database, so nothing may still be
                # due to change.
                " b.status IN ('requested', 'awaiting_payment', 'authorized') OR p.step IS NOT NULL"
                " OR (b.cancel_requested_at IS NOT NULL AND b.status = 'confirmed')"
                " OR (b.status IN ('rejected', 'expired', 'cancelled') AND p.status = 'authorized')"
            ).fetchone()[0]
    except psycopg.Error:
        return -1


def _check(cluster: Cluster, observations: Observations) -> dict[str, Any]:
    client = stripe.StripeClient("sk_test_chaos", base_addresses={"api": cluster.stripe.url})
    intents = [pi.to_dict() for pi in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()]
    per_booking = Counter((pi.get("metadata") or {}).get("booking_id") for pi in intents)
    with psycopg.connect(cluster.database_url) as conn:
        bookings = {str(r[0]): r[1:] for r in conn.execute(
            "SELECT b.id, b.status, b.total_amount, p.intent_id, p.status, p.amount_captured, p.amount_refunded"
            " FROM bookings b JOIN payments p ON p.booking_id = b.id")}
        double_seats = conn.execute(
            "SELECT count(*) FROM (SELECT event_id, seat_id FROM booking_items WHERE holds_inventory"
            " AND seat_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]
        slot_overlaps = conn.execute(
            "SELECT count(*) FROM booking_items a JOIN booking_items b ON a.resource_id = b.resource_id"
            " AND a.id < b.id AND a.period && b.period WHERE a.holds_inventory AND b.holds_inventory").fetchone()[0]
    settled = sum(1 for b in observations.accepted if b in bookings and bookings[b][0] in SETTLED)
    confirmed = [b for b, row in bookings.items() if row[0] == "confirmed"]
    by_intent = {pi["id"]: pi for pi in intents}
    bad_captures = [b for b in confirmed if not _captured_once(by_intent.get(bookings[b][2] or ""), bookings[b][1])]
    live_orphans = [pi["id"] for pi in intents if pi["status"] == "requires_capture"
                    and bookings.get((pi.get("metadata") or {}).get("booking_id"), ("",))[0] != "authorized"]
    money_mismatch = [b for b, row in bookings.items() if not _money_matches(row, by_intent.get(row[2] or ""))]
    in_outage = lambda t: any(a <= t <= b for a, b in observations.outages)  # noqa: E731
    server_errors = [(w, s) for t, w, s in observations.answers if s >= 500 and not in_outage(t)]
    by_status = Counter(row[0] for row in bookings.values())
    return {
        "requests accepted (202)": len(observations.accepted),
        "bookings by status": ", ".join(f"{status} {count}" for status, count in sorted(by_status.items())),
        "requests settled": settled,
        "seats double booked": double_seats,
        "slot overlaps": slot_overlaps,
        "max PaymentIntents per booking": max(per_booking.values(), default=0),
        "confirmed bookings": len(confirmed),
        "confirmed without exactly one capture": len(bad_captures),
        "live authorizations without a held booking": len(live_orphans),
        "bookings whose money differs from Stripe": len(money_mismatch),
        "5xx to valid requests outside the PostgreSQL outage": len(server_errors),
        # The webhook route answers 500 when its ledger write fails, so that Stripe delivers it again.
        "500 answers to clients": sum(1 for _, w, s in observations.answers if s == 500 and w != "webhook"),
        "500 answers to webhooks (ledger down: Stripe retries)": sum(
            1 for _, w, s in observations.answers if s == 500 and w == "webhook"),
        "503 answers during the outage": sum(1 for t, _, s in observations.answers if s == 503 and in_outage(t)),
        "_details": {"bad_captures": bad_captures[:5], "orphans": live_orphans[:5],
                     "money": money_mismatch[:5], "errors": server_errors[:5]},
    }


def _pid_of(worker_id: str) -> int:
    return int(worker_id.rsplit("-", 2)[-2])  # broker ids are host-pid-random


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except FileNotFoundError:
            return False
    return False


def _fetched_placements(client: redis.Redis, worker_id: str) -> set[str]:
    """The bookings whose placement message the worker had fetched and not acknowledged."""
    redis_ids = client.smembers(f"chaos:__acks__.{worker_id}.{queues.BOOKINGS}")
    bodies = client.hmget(f"chaos:{queues.BOOKINGS}.msgs", list(redis_ids)) if redis_ids else []
    messages = [json.loads(body) for body in bodies if body]
    return {m["args"][0] for m in messages if m.get("actor_name") == queues.PLACE_BOOKING.actor_name}


def settle_times_after_kills(database_url: str, booking_ids: set[str]) -> dict[str, Any]:
    """From 202 (the booking's row) to its first settled status, for bookings whose placement
    message a worker kill interrupted: the target is within 30 s of the kill, so under 30 s."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM min(t.at) - b.created_at) FROM bookings b"
            " LEFT JOIN booking_transitions t ON t.booking_id = b.id AND t.to_status = ANY(%s)"
            " WHERE b.id = ANY(%s::uuid[]) GROUP BY b.id", (list(SETTLED), list(booking_ids))).fetchall()
    seconds = sorted(float(r[0]) if r[0] is not None else float("inf") for r in rows)
    p99 = seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))] if seconds else 0.0
    return {
        "bookings in flight at a kill": len(seconds),
        "202 to settled for them, max / p99 (s)": f"{max(seconds, default=0.0):.1f} / {p99:.1f}",
    }


def _captured_once(intent: dict[str, Any] | None, total: int) -> bool:
    if intent is None or intent["status"] != "succeeded":
        return False
    charge = intent.get("latest_charge") or {}
    return isinstance(charge, dict) and charge.get("captured") and int(charge["amount"]) == total


def _money_matches(row: tuple[Any, ...], intent: dict[str, Any] | None) -> bool:
    status, total, intent_id, payment_status, captured, refunded = row
    if intent_id is None:
        return payment_status in ("none", "failed", "canceled") and captured == 0
    if intent is None:
        return False
    charge = intent.get("latest_charge") if isinstance(intent.get("latest_charge"), dict) else {}
    stripe_captured = int(charge.get("amount", 0)) if intent["status"] == "succeeded" else 0
    stripe_refunded = int(charge.get("amount_refunded", 0)) if charge else 0
    expected = {"requires_capture": "authorized", "succeeded": ("captured", "refunded"), "canceled": "canceled",
                "requires_payment_method": ("failed", "canceled")}.get(intent["status"])
    status_ok = payment_status in expected if isinstance(expected, tuple) else payment_status == expected
    return status_ok and captured == stripe_captured and refunded == stripe_refunded


def failures(figures: dict[str, Any]) -> list[str]:
    must_be_zero = ["seats double booked", "slot overlaps", "confirmed without exactly one capture",
                    "live authorizations without a held booking", "bookings whose money differs from Stripe",
                    "5xx to valid requests outside the PostgreSQL outage", "500 answers to clients"]
    broken = [name for name in must_be_zero if figures[name] != 0]
    if figures["requests settled"] != figures["requests accepted (202)"]:
        broken.append("requests settled")
    if figures["max PaymentIntents per booking"] > 1:
        broken.append("max PaymentIntents per booking")
    return broken


def main() -> None:
    parser = argparse.ArgumentParser(description="Fault campaign against the whole stack.")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    figures = run(ChaosConfig(requests=args.requests, clients=args.clients, workers=args.workers, seed=args.seed))
    details = figures.pop("_details")
    print_table("Fault campaign", ["figure", "value"], [[k, v] for k, v in figures.items()])
    broken = failures(figures)
    if broken:
        print(f"\nINVARIANTS BROKEN: {broken}\n{json.dumps(details, indent=1, default=str)}")
        raise SystemExit(1)
    print("\nall invariants hold")


if __name__ == "__main__":
    main()
