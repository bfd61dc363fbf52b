"""Collaborators the services need, described by what they do."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from domain.payments import IntentState


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class PaymentGateway(Protocol):
    """Raises PaymentDeclined, PaymentProviderUnavailable or PaymentRequestRejected."""

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

    def capture(self, intent_id: str, *, amount: int, idempotency_key: str) -> IntentState: ...

    def void(self, intent_id: str, *, idempotency_key: str) -> IntentState: ...

    def refund(self, intent_id: str, *, amount: int, idempotency_key: str) -> int: ...

    def retrieve(self, intent_id: str) -> IntentState: ...
