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
    #: The share of requests for places at the general-admission events (each client's first
    #: request is one too: a rush at the first event), and how many places each of them has.
    general_share: float = 0.1
    general_events: int = 2
    general_capacity: int = 0  # 0: requests // 60 + 6, so they sell out and clients contend
    #: The share of requests for seats of the events an operator cancels while the faults run.
    doomed_share: float = 0.08
    cancelled_events: int = 3
    #: Holds left to lapse, re-booked at once by another client, then paid late (-1: requests // 80 + 4).
    lapses: int = -1
    #: Every client registers a webhook endpoint (all types) pointing at a receiver the campaign runs.
    notifications: bool = True

    @property
    def places_per_general_event(self) -> int:
        return self.general_capacity or self.requests // 60 + 6

    @property
    def lapse_count(self) -> int:
        return self.lapses if self.lapses >= 0 else self.requests // 80 + 4
