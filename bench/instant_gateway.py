"""A payment gateway that answers at once, in memory: the payment-free mode of the benchmarks.

The worker then runs exactly the transactions of a card placement (lock and hold, claim the
authorize step, record the answer, acknowledge the outbox row) with no Stripe round trip, so
what is left is our own overhead. The product has no setting for this; `compose_worker` runs
`tasks.runtime.build_worker` with this gateway swapped in (the minimal switch the product would
need is a `PAYMENT_GATEWAY=stripe|instant` setting read there).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from unittest.mock import patch

import tasks.runtime
from config.settings import Settings
from domain.payments import CheckoutSession, CheckoutState, DisputeState, IntentState, PaymentStatus
from domain.ports import PaymentGateway
from tasks.runtime import WorkerRuntime, build_worker


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

    def retrieve_checkout(self, session_id: str) -> CheckoutState:
        return CheckoutState(session_id, "open", paid=False, intent_id=None)

    def retrieve_dispute(self, dispute_id: str) -> DisputeState:
        raise NotImplementedError("the benchmarks raise no disputes")

    def disputes_of(self, intent_id: str) -> list[DisputeState]:
        return []


def compose_worker(settings: Settings, gateway: PaymentGateway | None = None, *,
                   namespace: str | None = None) -> WorkerRuntime:
    """`tasks.runtime.build_worker` itself, with `gateway` in place of the Stripe one (None: Stripe).

    The production composition is reused as it is (only the gateway's constructor is swapped
    while it runs), so the payment-free worker cannot drift from the real one.
    """
    if gateway is None:
        return build_worker(settings, namespace=namespace)
    with patch.object(tasks.runtime, "StripeGateway", lambda *args, **kwargs: gateway):
        return build_worker(settings, namespace=namespace)
