"""Composing a worker process: engine, broker, Stripe gateway and actors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dramatiq
from sqlalchemy import Engine

from adapters.stripe import StripeGateway, make_stripe_client
from config.settings import Settings
from db.engine import make_engine, make_sessions
from services.context import Context
from tasks.actors import declare_actors
from tasks.broker import make_broker, make_dispatcher


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
    gateway = StripeGateway(
        make_stripe_client(settings.stripe_api_key, settings.stripe_api_base),
        return_url=settings.checkout_return_url,
    )
    context = Context(settings=settings, sessions=sessions, dispatch=make_dispatcher(broker), gateway=gateway)
    actors = declare_actors(broker, context)
    return WorkerRuntime(engine, broker, context, actors)
