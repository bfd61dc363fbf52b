"""A fault campaign against the whole stack, then the invariants that must hold, as figures.

    python -m bench.chaos                      # the long form: 10,000 requests
    python -m bench.chaos --requests 400       # the short form CI runs (tests/e2e/test_chaos.py)
    python -m bench.chaos --broker rabbitmq    # the queues on RabbitMQ (BROKER_URL, else 127.0.0.1:5672)

It starts its own PostgreSQL and Redis (they get restarted, so never the configured ones), the
local Stripe server behind a fault-injecting proxy, the API under gunicorn, several worker
processes and the scheduler. Concurrent clients then book overlapping seats and slots, confirm
and cancel, while the campaign SIGKILLs a random worker process every few seconds (`bookings
worker` starts a new one), restarts Redis once with its data gone (on RabbitMQ: restarts RabbitMQ's
application, which keeps its quorum queues), restarts PostgreSQL once, makes 10%
of Stripe calls fail, 5% lose their answer after Stripe acted and 5% slow, and delivers true
webhooks twice, late and out of order.

Most requests book seats nobody else wants (two events with more seats than requests), so money
moves: bookings are confirmed, cancelled by their client (refund per policy) or by an operator
(in full, or with nothing back), refunded in part by an operator, or paid with a card that needs
3-D Secure (authenticated, failed, abandoned). Alongside, what a real Stripe account sees: events
for other intents that carry a booking's id in their metadata, captures and refunds made in the
dashboard whose events come late, twice or never, signed events Stripe could not have sent, and
ten payment retries at once on one booking. When the load stops and the system drains, it checks
that every booking's money equals Stripe's to the cent and that nothing is left half done.

The package, by what each part does: `campaign` runs it (`run`, `main`); `cluster` starts and
restarts the stack's processes; `brokers` kills and restarts what is particular to Redis or
RabbitMQ; `catalog` makes the clients' keys and what they book; `clients` is what clients,
operators and the dashboard do; `postman` and `faults` are the faults and Stripe's misbehaviour;
`checks` drains the system and turns the invariants into figures (`failures`).
"""

from __future__ import annotations

from bench.chaos.brokers import rabbitmq_url, restart_figure, restart_rabbitmq
from bench.chaos.campaign import main, run
from bench.chaos.checks import MUST_BE_ZERO, failures
from bench.chaos.config import ChaosConfig

__all__ = ["MUST_BE_ZERO", "ChaosConfig", "failures", "main", "rabbitmq_url", "restart_figure", "restart_rabbitmq", "run"]
