"""A payment gateway that answers at once, in memory: the payment-free mode of the benchmarks.

The worker then runs exactly the transactions of a card placement (lock and hold, claim the
authorize step, record the answer, acknowledge the outbox row) with no Stripe round trip, so
what is left is our own overhead. The product has no setting for this; `compose_worker` mirrors
`tasks.runtime.build_worker` with the gateway passed in (the minimal switch the product would
need is a `PAYMENT_GATEWAY=stripe|instant` setting read there).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from config.settings import Settings
from db.engine import make_engine, make_sessions
from domain.payments import CheckoutSession, IntentState, PaymentStatus
from domain.ports import PaymentGateway
from services.context import Context
from tasks.actors import declare_actors
from tasks.broker import make_broker, make_dispatcher
from tasks.runtime import WorkerRuntime


class InstantGateway:
    """Every card is authorized (or captured) at once; every later step succeeds."""

    def authorize(self, *, booking_id: str, amount: int, currency: str, payment_method: str,
                  capture_immediately: bool, idempotency_key: str) -> IntentState:
        status = PaymentStatus.CAPTURED if capture_immediately else PaymentStatus.AUTHORIZED
        return IntentState(f"pi_bench_{uuid.uuid4().hex}", status, amount, amount if capture_immediately else 0)

    def confirm(self, intent_id: str, *, payment_method: str, idempotency_key: str) -> IntentState:
        return IntentState(intent_id, PaymentStatus.AUTHORIZED, 0, 0)

    def create_intent(self, *, booking_id: str, amount: int, currency: str, capture_immediately: bool,
                      idempotency_key: str) -> IntentState:
        return IntentState(f"pi_bench_{uuid.uuid4().hex}", PaymentStatus.REQUIRES_ACTION, 0, 0, "secret")

    def create_checkout(self, *, booking_id: str, amount: int, currency: str, description: str,
                        capture_immediately: bool, expires_at: datetime, idempotency_key: str) -> CheckoutSession:
        session_id = f"cs_bench_{uuid.uuid4().hex}"
        return CheckoutSession(session_id, f"http://127.0.0.1/checkout/{session_id}")

    def expire_checkout(self, session_id: str, *, idempotency_key: str) -> None:
        return None

    def capture(self, intent_id: str, *, amount: int, idempotency_key: str) -> IntentState:
        return IntentState(intent_id, PaymentStatus.CAPTURED, amount, amount)

    def void(self, intent_id: str, *, idempotency_key: str) -> IntentState:
        return IntentState(intent_id, PaymentStatus.CANCELED, 0, 0)

    def refund(self, intent_id: str, *, amount: int, idempotency_key: str) -> int:
        return amount

    def retrieve(self, intent_id: str) -> IntentState:
        return IntentState(intent_id, PaymentStatus.AUTHORIZED, 0, 0)


def compose_worker(settings: Settings, gateway: PaymentGateway, *, namespace: str | None = None) -> WorkerRuntime:
    """`tasks.runtime.build_worker` with the gateway given (kept in step with it by hand)."""
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size, application_name="bookings-worker")
    sessions = make_sessions(engine)
    broker = make_broker(settings, sessions=sessions, namespace=namespace)
    context = Context(settings=settings, sessions=sessions, dispatch=make_dispatcher(broker), gateway=gateway)
    actors = declare_actors(broker, context)
    return WorkerRuntime(engine, broker, context, actors)
