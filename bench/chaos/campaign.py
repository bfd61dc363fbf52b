"""Running the campaign: start the stack, play the load and the faults, drain, check."""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.chaos.brokers import restart_figure
from bench.chaos.caller import Caller
from bench.chaos.catalog import client_keys, make_catalog
from bench.chaos.checks import (
    check_invariants,
    drain,
    failures,
    read_back_cost,
    settle_times_after_kills,
)
from bench.chaos.cluster import Cluster
from bench.chaos.config import ChaosConfig
from bench.chaos.event_cancellations import (
    cancel_events,
    check_event_cancellations,
    make_doomed_events,
)
from bench.chaos.faults import deliver_true_webhooks, play_faults, send_mischief
from bench.chaos.general_admission import (
    CapacityWatch,
    check_general_admission,
    make_general_events,
)
from bench.chaos.lapses import FLAVOURS, Lapse, check_lapses, make_lapse_targets, play_lapse
from bench.chaos.mix import run_client
from bench.chaos.notifications import (
    check_notifications,
    deliveries_leased,
    deliveries_pending,
    register_endpoints,
)
from bench.chaos.observations import Observations
from bench.chaos.postman import Postman
from bench.environment import LOCAL, print_table
from testkit.faults import RandomFaults
from testkit.webhook_receiver import WebhookReceiver


def run(config: ChaosConfig, root: Path | None = None) -> dict[str, Any]:
    """Run the campaign; returns the figures (see `failures` for the broken invariants)."""
    root = root or LOCAL.parent / "chaos" / uuid.uuid4().hex[:8]
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    cluster = Cluster(root, config)
    observations = Observations()
    receiver = WebhookReceiver(refuse_first=0.1)
    try:
        keys, operator_key = client_keys(cluster.database_url, config.clients)
        endpoints = register_endpoints(cluster.base_url, keys, receiver, observations) if config.notifications else {}
        catalog, lapse_targets, general = _inventory(cluster, config, operator_key, observations)
        watch = CapacityWatch(cluster.database_url, general)
        cluster.proxy.random_faults = RandomFaults(error=0.10, lost=0.05, slow=0.05, seed=config.seed)
        postman = Postman(cluster.base_url, observations)
        stop, clients_done = threading.Event(), threading.Event()
        background = [
            threading.Thread(target=play_faults, args=(cluster, observations, stop, rng, config), daemon=True),
            threading.Thread(target=deliver_true_webhooks, args=(cluster, postman, stop, rng), daemon=True),
            threading.Thread(target=send_mischief, args=(cluster, postman, observations, stop, config.seed), daemon=True),
            threading.Thread(target=postman.run, args=(stop,), daemon=True),
            threading.Thread(target=watch.run, args=(stop,), daemon=True),
        ]
        canceller = threading.Thread(target=cancel_events, daemon=True, args=(
            cluster.base_url, operator_key, catalog["doomed"], observations, clients_done, config))
        for thread in [*background, canceller]:
            thread.start()
        started = time.monotonic()

        def caller(key: int, seed: int) -> Caller:
            return Caller.of(cluster, observations, postman, keys[key % config.clients], operator_key, seed,
                             config.silent_dashboard)

        with ThreadPoolExecutor(max_workers=config.clients) as pool, \
                ThreadPoolExecutor(max_workers=max(1, min(8, len(lapse_targets)))) as lapsing:
            lapses = [lapsing.submit(play_lapse, caller(i, -i), caller(i + 1, -i - 1000), target,
                                     FLAVOURS[i % len(FLAVOURS)]) for i, target in enumerate(lapse_targets)]
            share = [config.requests // config.clients + (i < config.requests % config.clients)
                     for i in range(config.clients)]
            callers = [caller(i, config.seed + i) for i in range(config.clients)]
            list(pool.map(lambda i: run_client(callers[i], catalog, share[i], i, config),
                          range(config.clients)))
            clients_done.set()
            played = [_outcome(lapse) for lapse in lapses]
        canceller.join()
        load_seconds = time.monotonic() - started
        stop.set()
        for thread in background:
            thread.join()
        injected = dict(cluster.proxy.random_faults.counts)
        cluster.proxy.random_faults = None  # Stripe behaves while the system drains
        leased = deliveries_leased(cluster.database_url, endpoints) if endpoints else 0
        drained, waited = drain(cluster, config.drain_timeout, since=datetime.now(UTC), also={
            "webhook deliveries": lambda: deliveries_pending(cluster.database_url, endpoints)})
        figures = check_invariants(cluster, observations)
        figures.update(settle_times_after_kills(cluster.database_url, observations.in_flight_at_kills))
        figures.update(read_back_cost(cluster))
        figures.update({
            "booking requests made (accepted or refused by a sale rule)": observations.booking_requests,
            "load seconds": round(load_seconds, 1), "drain seconds": round(drained, 1),
            "drain: seconds until each had nothing left": ", ".join(f"{k} {v}" for k, v in waited.items()),
            # A sweep's claim lasts 2 minutes (services.notifications.CLAIM_LEASE): what a kill cut waits that long.
            "webhook deliveries under a sweep's claim when the load stopped": leased,
            "workers SIGKILLed": observations.kills, "webhooks delivered": observations.webhooks_sent,
            restart_figure(config.broker): " / ".join(
                "yes" if observations.restarts.get(s) else "no" for s in ("broker", "postgresql")),
            "Stripe calls failed / lost / slowed": f"{injected['error']} / {injected['lost']} / {injected['slow']}",
            "actions": ", ".join(f"{name} {count}" for name, count in sorted(observations.actions.items())),
        })
        figures.update(_scenario_figures(cluster, operator_key, observations, watch, played, catalog,
                                         endpoints, receiver))
        return _with_details_apart(figures)
    finally:
        receiver.stop()
        cluster.stop()


def _inventory(cluster: Cluster, config: ChaosConfig, operator_key: str, observations: Observations,
               ) -> tuple[dict[str, Any], list[Callable[[str], dict[str, Any]]], list[dict[str, Any]]]:
    """What the clients book (`catalog`), the lapsed holds' targets, and every general-admission event."""
    catalog = make_catalog(cluster.database_url, open_seats=config.requests + config.clients)
    general = make_general_events(cluster.base_url, operator_key, observations, count=config.general_events,
                                  capacity=config.places_per_general_event)
    catalog["general"] = [str(event["id"]) for event in general]
    catalog["doomed"], catalog["doomed_seats"] = make_doomed_events(
        cluster.database_url, seats=config.requests + config.clients, count=config.cancelled_events)
    lapse_targets, lapse_events = make_lapse_targets(cluster.database_url, cluster.base_url, operator_key,
                                                     observations, config.lapse_count)
    return catalog, lapse_targets, general + lapse_events


def _scenario_figures(cluster: Cluster, operator_key: str, observations: Observations, watch: CapacityWatch,
                      played: list[Lapse], catalog: dict[str, Any], endpoints: dict[str, str],
                      receiver: WebhookReceiver) -> dict[str, Any]:
    """The invariants of general admission, lapsed holds, cancelled events and clients' webhooks,
    each only if it was played."""
    figures: dict[str, Any] = {}
    if watch.capacity:
        figures.update(check_general_admission(cluster.base_url, cluster.database_url, operator_key, watch))
    if played:
        figures.update(check_lapses(cluster.database_url, played))
    if catalog["doomed"]:
        figures.update(check_event_cancellations(cluster.base_url, cluster.database_url, operator_key,
                                                 observations, planned=len(catalog["doomed"])))
    if endpoints:
        figures.update(check_notifications(cluster.database_url, endpoints, receiver))
    return figures


def _outcome(scenario: Future[Lapse]) -> Lapse:
    """A scenario's record; one that broke is counted as never held, with its error, and the
    campaign goes on (its figures say so)."""
    try:
        return scenario.result()
    except Exception as error:  # noqa: BLE001 (a bug of the scenario, not of the system)
        broken = Lapse("broken", "seat")
        broken.late_answers[f"scenario broke: {error!r}"[:120]] += 1
        return broken


def _with_details_apart(figures: dict[str, Any]) -> dict[str, Any]:
    """Every check's `_details …` under the one `_details`, so the rest prints as a table."""
    details = figures.pop("_details")
    for name in [name for name in figures if name.startswith("_details ")]:
        details[name.removeprefix("_details ")] = figures.pop(name)
    return {**figures, "_details": details}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description="Fault campaign against the whole stack.")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-silent-dashboard", action="store_true",
                        help="deliver every dashboard capture's and refund's event (late or twice, never lost)")
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    parser.add_argument("--cancelled-events", type=int, default=3, help="events an operator cancels mid-campaign")
    parser.add_argument("--lapses", type=int, default=-1,
                        help="holds left to lapse and re-booked at once (default: requests / 80 + 4)")
    parser.add_argument("--no-notifications", action="store_true", help="register no webhook endpoints")
    args = parser.parse_args()
    figures = run(ChaosConfig(requests=args.requests, clients=args.clients, workers=args.workers, seed=args.seed,
                              silent_dashboard=not args.no_silent_dashboard, broker=args.broker,
                              cancelled_events=args.cancelled_events, lapses=args.lapses,
                              notifications=not args.no_notifications))
    details = figures.pop("_details")
    print_table("Fault campaign", ["figure", "value"], [[k, v] for k, v in figures.items()])
    broken = failures(figures)
    if broken:
        print(f"\nINVARIANTS BROKEN: {broken}\n{json.dumps(details, indent=1, default=str)}")
        raise SystemExit(1)
    print("\nall invariants hold")

