"""The adapter between `domain.ports.PaymentGateway` and the official Stripe SDK.

Stripe errors are classified here once: card errors are a business outcome (PaymentDeclined);
rate limits, connection errors and 5xx are transient (PaymentProviderUnavailable, retried with
backoff); invalid requests are bugs or bad data (PaymentRequestRejected, dead-lettered).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import stripe

from domain.errors import PaymentDeclined, PaymentProviderUnavailable, PaymentRequestRejected
from domain.payments import IntentState, PaymentStatus

_STATUS = {
    "requires_capture": PaymentStatus.AUTHORIZED,
    "succeeded": PaymentStatus.CAPTURED,
    "canceled": PaymentStatus.CANCELED,
    "requires_payment_method": PaymentStatus.REQUIRES_ACTION,
    "requires_confirmation": PaymentStatus.REQUIRES_ACTION,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "processing": PaymentStatus.REQUIRES_ACTION,
}


def make_stripe_client(api_key: str, api_base: str | None, *, timeout_seconds: float = 20) -> stripe.StripeClient:
    """`api_base` points the SDK at a local Stripe-compatible server in development and tests."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        # The SDK retries connection failures itself, reusing our idempotency key.
        max_network_retries=2,
        http_client=stripe.HTTPXClient(timeout=timeout_seconds, allow_sync_methods=True),
    )


def intent_state(stripe_intent: Any) -> IntentState:
    # SDK objects are not dicts (v15+): read a plain copy.
    intent = stripe_intent.to_dict() if hasattr(stripe_intent, "to_dict") else dict(stripe_intent)
    status = _STATUS.get(intent["status"], PaymentStatus.REQUIRES_ACTION)
    amount = int(intent["amount"])
    return IntentState(
        intent_id=intent["id"], status=status,
        amount_authorized=amount if status in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED) else 0,
        amount_captured=captured_amount(intent) if status is PaymentStatus.CAPTURED else 0,
        client_secret=intent.get("client_secret"),
    )


def captured_amount(intent: dict[str, Any]) -> int:
    """Stripe reports `amount_received`; localstripe does not, but expands `latest_charge`."""
    if intent.get("amount_received") is not None:
        return int(intent["amount_received"])
    charge = intent.get("latest_charge")
    if isinstance(charge, dict) and charge.get("captured"):
        return int(charge["amount"])
    return int(intent["amount"])


class StripeGateway:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def authorize(
        self, *, booking_id: str, amount: int, currency: str, payment_method: str,
        capture_immediately: bool, idempotency_key: str,
    ) -> IntentState:
        params: Any = {
            "amount": amount,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "capture_method": "automatic" if capture_immediately else "manual",
            "confirm": True,
            "metadata": {"booking_id": booking_id},
        }
        with _classified():
            intent = self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return intent_state(intent)

    def capture(self, intent_id: str, *, amount: int, idempotency_key: str) -> IntentState:
        with _classified():
            intent = self._client.v1.payment_intents.capture(
                intent_id, params={"amount_to_capture": amount},
                options={"idempotency_key": idempotency_key},
            )
        return intent_state(intent)

    def void(self, intent_id: str, *, idempotency_key: str) -> IntentState:
        with _classified():
            intent = self._client.v1.payment_intents.cancel(
                intent_id, options={"idempotency_key": idempotency_key}
            )
        return intent_state(intent)

    def refund(self, intent_id: str, *, amount: int, idempotency_key: str) -> int:
        with _classified():
            refund = self._client.v1.refunds.create(
                params={"payment_intent": intent_id, "amount": amount},
                options={"idempotency_key": idempotency_key},
            )
        return int(refund["amount"])

    def retrieve(self, intent_id: str) -> IntentState:
        with _classified():
            intent = self._client.v1.payment_intents.retrieve(intent_id)
        return intent_state(intent)


@contextmanager
def _classified() -> Iterator[None]:
    """Translate Stripe's exception tree into the domain's three kinds of payment failure."""
    try:
        yield
    except stripe.CardError as exc:
        raise PaymentDeclined(str(exc.user_message or "card declined"), details=exc.code) from exc
    except (stripe.RateLimitError, stripe.APIConnectionError) as exc:
        raise PaymentProviderUnavailable(f"Stripe unreachable: {type(exc).__name__}") from exc
    except stripe.StripeError as exc:
        if exc.http_status is not None and exc.http_status >= 500:
            raise PaymentProviderUnavailable(f"Stripe failed: HTTP {exc.http_status}") from exc
        raise PaymentRequestRejected(f"Stripe rejected the request: {exc.user_message or exc}") from exc
