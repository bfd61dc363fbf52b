"""Composing a worker process: engine, broker, Stripe gateway and actors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
from sqlalchemy import Engine

from adapters.stripe import StripeGateway, make_stripe_client
from adapters.stripe_budget import StripeRequestBudget
from config.settings import Settings
from db.engine import make_engine, make_sessions
from services.context import Context
from tasks.actors import declare_actors
from tasks.broker import make_broker, make_dispatcher

#: One Stripe call and the SDK's two retries (see make_stripe_client), and the SDK's waits
#: between them (0.5 s, then 1 s, jittered down).
STRIPE_ATTEMPTS = 3
STRIPE_RETRY_WAITS_SECONDS = 1.5
#: Below this an attempt would cut off Stripe's slow but normal answers (a card network's).
MIN_STRIPE_TIMEOUT_SECONDS = 5.0
MIN_STRIPE_BUDGET_WAIT_SECONDS = 0.5


def stripe_budget_wait_seconds(lease: timedelta) -> float:
    """How long each attempt may wait for its turn in the shared request budget
    (adapters.stripe_budget): longer than that, the claim is released and the message retried
    with backoff."""
    return max(MIN_STRIPE_BUDGET_WAIT_SECONDS, lease.total_seconds() / 20)


def stripe_timeout_seconds(lease: timedelta) -> float:
    """Each attempt's timeout, so that a call with its retries (and each attempt's wait for its
    turn in the request budget) ends before its step's lease does: otherwise another worker
    could repeat the step while the first still waits."""
    waits = STRIPE_RETRY_WAITS_SECONDS + STRIPE_ATTEMPTS * stripe_budget_wait_seconds(lease)
    spread = (lease.total_seconds() - waits) / STRIPE_ATTEMPTS
    return max(MIN_STRIPE_TIMEOUT_SECONDS, spread)


@dataclass
class WorkerRuntime:
    engine: Engine
    broker: dramatiq.Broker
    context: Context
    actors: dict[str, dramatiq.Actor[Any, Any]]


def build_worker(settings: Settings, *, namespace: str | None = None) -> WorkerRuntime:
    engine = make_engine(
        settings.database_url, pool_size=settings.db_pool_size, application_name="bookings-worker",
        lock_timeout_ms=settings.lock_timeout_ms, pre_ping=False,
    )
    sessions = make_sessions(engine)
    broker = make_broker(settings, sessions=sessions, namespace=namespace)
    budget = None
    if settings.stripe_max_requests_per_second > 0:
        budget = StripeRequestBudget(settings.redis_url, settings.stripe_max_requests_per_second,
                                     namespace or settings.broker_namespace,
                                     max_wait=stripe_budget_wait_seconds(settings.payment_step_lease))
    gateway = StripeGateway(
        make_stripe_client(settings.stripe_api_key, settings.stripe_api_base,
                           timeout_seconds=stripe_timeout_seconds(settings.payment_step_lease), budget=budget),
        return_url=settings.checkout_return_url,
    )
    context = Context(settings=settings, sessions=sessions, dispatch=make_dispatcher(broker), gateway=gateway)
    actors = declare_actors(broker, context)
    return WorkerRuntime(engine, broker, context, actors)
