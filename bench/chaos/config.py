"""The campaign's size and shape, and the constants every part of it shares."""

from __future__ import annotations

from dataclasses import dataclass

from domain import lifecycle

WEBHOOK_SECRET = "whsec_chaos_campaign"
#: The codes the API refuses a booking request with when it breaks a sale rule of the catalog.
SALE_RULES = frozenset({"sales_closed", "outside_availability", "too_soon", "too_far_ahead", "off_granularity"})
SETTLED = tuple(str(status) for status in lifecycle.SETTLED)


@dataclass
class ChaosConfig:
    requests: int = 10_000
    clients: int = 16
    workers: int = 3
    seed: int = 7
    kill_every: float = 3.0
    drain_timeout: float = 300.0
    #: The share of requests that book seats nobody else wants (the rest contend for the demo's).
    open_share: float = 0.8
    #: Whether some dashboard captures and refunds never get their event (the service does not
    #: yet recover from that: tests/integration/test_money_moved_at_stripe_silently.py).
    silent_dashboard: bool = True
    #: "redis", or "rabbitmq" (BROKER_URL when it is amqp://, else the local RabbitMQ).
    broker: str = "redis"
