"""The faults played while clients book: worker kills, broker and PostgreSQL restarts, true
webhooks twice and late, and events that must change nothing (other intents', poison)."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from typing import Any

import httpx
import psycopg
import stripe

from bench.chaos.cluster import Cluster
from bench.chaos.config import ChaosConfig
from bench.chaos.observations import Observations
from bench.chaos.postman import Postman
from testkit import stripe_mischief


def play_faults(cluster: Cluster, observations: Observations, stop: threading.Event, rng: random.Random,
            config: ChaosConfig) -> None:
    """A worker killed every few seconds; the broker restarted (Redis: empty) a quarter of the way
    through the requests, PostgreSQL restarted half way."""
    broker_tried = broker_done = postgres_done = False
    last_kill = time.monotonic()
    while not stop.wait(0.2):
        progress = len(observations.accepted) / config.requests
        if not broker_tried and progress >= 0.25:
            broker_tried, broker_done = True, cluster.restart_broker()
        elif broker_tried and not postgres_done and progress >= 0.5:
            cluster.restart_postgres(observations)
            postgres_done = True
        if time.monotonic() - last_kill >= config.kill_every:
            in_flight = cluster.kill_worker_process(rng)
            if in_flight is not None:
                observations.kills += 1
                observations.in_flight_at_kills |= in_flight
            last_kill = time.monotonic()
    observations.restarts = {"broker": broker_done, "postgresql": postgres_done}


def deliver_true_webhooks(cluster: Cluster, postman: Postman, stop: threading.Event, rng: random.Random) -> None:
    """True events about real intents, each sent twice, some late, in shuffled order."""
    client = stripe.StripeClient("sk_test_chaos", base_addresses={"api": cluster.stripe.url})
    while not stop.wait(1.0):
        try:
            intents = [pi.to_dict() for pi in client.v1.payment_intents.list(params={"limit": 20})]
        except stripe.StripeError:
            continue
        for intent in rng.sample(intents, min(4, len(intents))):
            event = _true_event(intent)
            if event is not None:
                postman.schedule(event, [rng.choice((0, 0, 2, 5)) for _ in range(2)])


def send_mischief(cluster: Cluster, postman: Postman, observations: Observations, stop: threading.Event,
              seed: int) -> None:
    """Every second: an event for another intent that carries a booking's id, and a poison event
    naming a booking's own intent. Neither may change anything."""
    rng = random.Random(seed)
    client = stripe.StripeClient("sk_test_chaos", base_addresses={"api": cluster.stripe.url})
    kinds = [lambda b, amount: stripe_mischief.one_cent_payment(client, b),
             lambda b, amount: stripe_mischief.canceled_unrelated_intent(client, b, amount),
             lambda b, amount: stripe_mischief.refund_of_another_intent(client, b)]
    with httpx.Client(base_url=cluster.base_url, trust_env=False, timeout=10) as http:
        while not stop.wait(1.0):
            target = _a_paid_booking(cluster.database_url, rng)
            if target is None:
                continue
            booking_id, intent_id, amount = target
            try:
                foreign = kinds[rng.randrange(len(kinds))](booking_id, amount)
            except stripe.StripeError:
                continue
            with observations.lock:
                observations.foreign_intents.add(foreign.intent_id)
                observations.foreign_events.update(str(e["id"]) for e in foreign.events)
            for event in foreign.events:
                postman.schedule(event, [0.0])
            what, body = rng.choice(list(stripe_mischief.poison_events(intent_id, amount).items()))
            status = postman.deliver(http, body)
            with observations.lock:
                observations.poison.append((time.monotonic(), str(json.loads(body)["id"]), what, status))


def _a_paid_booking(database_url: str, rng: random.Random) -> tuple[str, str, int] | None:
    """A booking with a PaymentIntent: (booking id, intent id, total)."""
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT b.id, p.intent_id, b.total_amount FROM bookings b JOIN payments p ON p.booking_id = b.id"
                " WHERE p.intent_id IS NOT NULL ORDER BY b.created_at DESC OFFSET %s LIMIT 1",
                (rng.randrange(50),)).fetchone()
    except psycopg.Error:
        return None
    return (str(row[0]), str(row[1]), int(row[2])) if row else None


def _true_event(intent: dict[str, Any]) -> dict[str, Any] | None:
    kind = {"requires_capture": "payment_intent.amount_capturable_updated", "succeeded": "payment_intent.succeeded",
            "canceled": "payment_intent.canceled"}.get(intent["status"])
    if kind is None:
        return None
    if kind.endswith("capturable_updated"):
        intent = {**intent, "amount_capturable": intent["amount"]}
    return {"id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "type": kind, "created": int(time.time()),
            "livemode": False, "data": {"object": intent}}
