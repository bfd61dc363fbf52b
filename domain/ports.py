"""Collaborators the services need, described by what they do."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from domain.payments import CheckoutSession, CheckoutState, DisputeState, IntentState


class PaymentGateway(Protocol):
    """Raises PaymentDeclined, PaymentProviderUnavailable or PaymentRequestRejected.

    Every mutating call takes an idempotency key that is stable across retries of one step.
    """

    def authorize(
        self,
        *,
        booking_id: str,
        amount: int,
        currency: str,
        payment_method: str,
        capture_immediately: bool,
        idempotency_key: str,
    ) -> IntentState: ...

    def confirm(self, intent_id: str, *, payment_method: str, idempotency_key: str) -> IntentState: ...

    def create_intent(
        self, *, booking_id: str, amount: int, currency: str, capture_immediately: bool, idempotency_key: str
    ) -> IntentState: ...

    def create_checkout(
        self,
        *,
        booking_id: str,
        amount: int,
        currency: str,
        description: str,
        capture_immediately: bool,
        expires_at: datetime,
        idempotency_key: str,
    ) -> CheckoutSession: ...

    def expire_checkout(self, session_id: str, *, idempotency_key: str) -> None: ...

    def capture(self, intent_id: str, *, amount: int, idempotency_key: str) -> IntentState: ...

    def void(self, intent_id: str, *, idempotency_key: str) -> IntentState: ...

    def refund(self, intent_id: str, *, amount: int, idempotency_key: str) -> int: ...

    def retrieve(self, intent_id: str) -> IntentState: ...

    def retrieve_checkout(self, session_id: str) -> CheckoutState: ...

    def retrieve_dispute(self, dispute_id: str) -> DisputeState: ...

    def disputes_of(self, intent_id: str) -> list[DisputeState]:
        """The disputes of the intent's charge, newest first."""
        ...
