"""Running the campaign: start the stack, play the load and the faults, drain, check."""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.chaos.brokers import restart_figure
from bench.chaos.catalog import client_keys, make_catalog
from bench.chaos.checks import (
    check_invariants,
    drain,
    failures,
    read_back_cost,
    settle_times_after_kills,
)
from bench.chaos.clients import Caller, run_client
from bench.chaos.cluster import Cluster
from bench.chaos.config import ChaosConfig
from bench.chaos.faults import deliver_true_webhooks, play_faults, send_mischief
from bench.chaos.observations import Observations
from bench.chaos.postman import Postman
from bench.environment import LOCAL, print_table
from testkit.faults import RandomFaults


def run(config: ChaosConfig, root: Path | None = None) -> dict[str, Any]:
    """Run the campaign; returns the figures (see `failures` for the broken invariants)."""
    root = root or LOCAL.parent / "chaos" / uuid.uuid4().hex[:8]
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    cluster = Cluster(root, config)
    observations = Observations()
    try:
        keys, operator_key = client_keys(cluster.database_url, config.clients)
        catalog = make_catalog(cluster.database_url, open_seats=config.requests + config.clients)
        cluster.proxy.random_faults = RandomFaults(error=0.10, lost=0.05, slow=0.05, seed=config.seed)
        postman = Postman(cluster.base_url, observations)
        stop = threading.Event()
        background = [
            threading.Thread(target=play_faults, args=(cluster, observations, stop, rng, config), daemon=True),
            threading.Thread(target=deliver_true_webhooks, args=(cluster, postman, stop, rng), daemon=True),
            threading.Thread(target=send_mischief, args=(cluster, postman, observations, stop, config.seed), daemon=True),
            threading.Thread(target=postman.run, args=(stop,), daemon=True),
        ]
        for thread in background:
            thread.start()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=config.clients) as pool:
            share = [config.requests // config.clients + (i < config.requests % config.clients)
                     for i in range(config.clients)]
            callers = [Caller.of(cluster, observations, postman, keys[i], operator_key, config.seed + i,
                                 config.silent_dashboard) for i in range(config.clients)]
            list(pool.map(lambda i: run_client(callers[i], catalog, share[i], i, config),
                          range(config.clients)))
        load_seconds = time.monotonic() - started
        stop.set()
        for thread in background:
            thread.join()
        injected = dict(cluster.proxy.random_faults.counts)
        cluster.proxy.random_faults = None  # Stripe behaves while the system drains
        drained = drain(cluster, observations, config.drain_timeout, since=datetime.now(UTC))
        figures = check_invariants(cluster, observations)
        figures.update(settle_times_after_kills(cluster.database_url, observations.in_flight_at_kills))
        figures.update(read_back_cost(cluster))
        figures.update({
            "load seconds": round(load_seconds, 1), "drain seconds": round(drained, 1),
            "workers SIGKILLed": observations.kills, "webhooks delivered": observations.webhooks_sent,
            restart_figure(config.broker): " / ".join(
                "yes" if observations.restarts.get(s) else "no" for s in ("broker", "postgresql")),
            "Stripe calls failed / lost / slowed": f"{injected['error']} / {injected['lost']} / {injected['slow']}",
            "actions": ", ".join(f"{name} {count}" for name, count in sorted(observations.actions.items())),
        })
        return figures
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description="Fault campaign against the whole stack.")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-silent-dashboard", action="store_true",
                        help="deliver every dashboard capture's and refund's event (late or twice, never lost)")
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    args = parser.parse_args()
    figures = run(ChaosConfig(requests=args.requests, clients=args.clients, workers=args.workers, seed=args.seed,
                              silent_dashboard=not args.no_silent_dashboard, broker=args.broker))
    details = figures.pop("_details")
    print_table("Fault campaign", ["figure", "value"], [[k, v] for k, v in figures.items()])
    broken = failures(figures)
    if broken:
        print(f"\nINVARIANTS BROKEN: {broken}\n{json.dumps(details, indent=1, default=str)}")
        raise SystemExit(1)
    print("\nall invariants hold")

