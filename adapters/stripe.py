"""The adapter between `domain.ports.PaymentGateway` and the official Stripe SDK.

Stripe errors are classified here once: card errors are a business outcome (PaymentDeclined);
rate limits, connection errors and 5xx are transient (PaymentProviderUnavailable, retried with
backoff); invalid requests are bugs or bad data (PaymentRequestRejected, dead-lettered).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from adapters.stripe_budget import BudgetedHTTPClient, StripeRequestBudget
from domain.errors import (
    ChargeDisputed,
    PaymentDeclined,
    PaymentProviderRateLimited,
    PaymentProviderUnavailable,
    PaymentRequestInvalid,
    PaymentRequestRejected,
)
from domain.payments import CheckoutSession, CheckoutState, DisputeState, IntentState, PaymentStatus
from domain.webhooks import ProviderEvent

CHECKOUT_MIN_LIFETIME = timedelta(minutes=31)

_STATUS = {
    "requires_capture": PaymentStatus.AUTHORIZED,
    "succeeded": PaymentStatus.CAPTURED,
    "canceled": PaymentStatus.CANCELED,
    "requires_payment_method": PaymentStatus.REQUIRES_ACTION,
    "requires_confirmation": PaymentStatus.REQUIRES_ACTION,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "processing": PaymentStatus.REQUIRES_ACTION,
}


def make_stripe_client(
    api_key: str, api_base: str | None, *, timeout_seconds: float = 20, budget: StripeRequestBudget | None = None
) -> stripe.StripeClient:
    """`api_base` points the SDK at a local Stripe-compatible server in development and tests;
    `budget` paces every request (see adapters.stripe_budget)."""
    options: Any = {"timeout": timeout_seconds, "allow_sync_methods": True}
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        # The SDK retries connection failures itself, reusing our idempotency key.
        max_network_retries=2,
        http_client=BudgetedHTTPClient(budget, **options) if budget else stripe.HTTPXClient(**options),
    )


def intent_state(stripe_intent: Any) -> IntentState:
    # SDK objects are not dicts (v15+): read a plain copy.
    intent = stripe_intent.to_dict() if hasattr(stripe_intent, "to_dict") else dict(stripe_intent)
    error = intent.get("last_payment_error") or {}
    status = _STATUS.get(intent["status"], PaymentStatus.REQUIRES_ACTION)
    if intent["status"] == "requires_payment_method" and error:
        status = PaymentStatus.FAILED  # the customer's attempt was declined; another may follow
    amount = int(intent["amount"])
    charge = intent.get("latest_charge")
    return IntentState(
        intent_id=intent["id"], status=status,
        amount_authorized=amount if status in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED) else 0,
        amount_captured=captured_amount(intent) if status is PaymentStatus.CAPTURED else 0,
        client_secret=intent.get("client_secret"),
        amount=amount, currency=str(intent["currency"]),
        # Refunds are on the charge; an unexpanded charge (an id) is read by `retrieve`.
        amount_refunded=int(charge.get("amount_refunded") or 0) if isinstance(charge, dict) else 0,
        decline_code=error.get("decline_code") or error.get("code"),
        next_action=intent.get("next_action") or None,
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
    def __init__(self, client: stripe.StripeClient, *, return_url: str) -> None:
        """`return_url` is the front end's page the hosted checkout sends the customer back to."""
        self._client = client
        self._return_url = return_url

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

    def confirm(self, intent_id: str, *, payment_method: str, idempotency_key: str) -> IntentState:
        """Retry an existing intent with a new payment method instead of making a second one."""
        with _classified():
            intent = self._client.v1.payment_intents.confirm(
                intent_id, params={"payment_method": payment_method},
                options={"idempotency_key": idempotency_key},
            )
        return intent_state(intent)

    def create_intent(
        self, *, booking_id: str, amount: int, currency: str, capture_immediately: bool, idempotency_key: str
    ) -> IntentState:
        """An unconfirmed intent whose client_secret the front end confirms (mode `client`)."""
        params: Any = {
            "amount": amount,
            "currency": currency.lower(),
            "capture_method": "automatic" if capture_immediately else "manual",
            "metadata": {"booking_id": booking_id},
        }
        with _classified():
            intent = self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return intent_state(intent)

    def create_checkout(
        self, *, booking_id: str, amount: int, currency: str, description: str,
        capture_immediately: bool, expires_at: datetime, idempotency_key: str,
    ) -> CheckoutSession:
        params: Any = {
            "mode": "payment",
            "line_items": [{
                "quantity": 1,
                "price_data": {
                    "currency": currency.lower(), "unit_amount": amount,
                    "product_data": {"name": description},
                },
            }],
            "payment_intent_data": {
                "capture_method": "automatic" if capture_immediately else "manual",
                "metadata": {"booking_id": booking_id},
            },
            "metadata": {"booking_id": booking_id},
            "client_reference_id": booking_id,
            # Stripe accepts 30 minutes to 24 hours ahead. A shorter hold expires the booking
            # first, and its void step then expires the session.
            "expires_at": int(max(expires_at, datetime.now(UTC) + CHECKOUT_MIN_LIFETIME).timestamp()),
            "success_url": f"{self._return_url}?booking_id={booking_id}&result=success",
            "cancel_url": f"{self._return_url}?booking_id={booking_id}&result=cancel",
        }
        # The session's expiry depends on when it is asked for, so a retry after a lost answer
        # asks for a different one; under the same key Stripe would refuse it as a reused key.
        # The lost session's URL reached no one, and it expires on its own.
        key = f"{idempotency_key}-until-{params['expires_at']}"
        with _classified():
            session = self._client.v1.checkout.sessions.create(params=params, options={"idempotency_key": key})
        if session.url is None:  # only embedded sessions have none, and this asks for a hosted page
            raise PaymentRequestRejected(f"Checkout Session {session.id} came without a URL")
        return CheckoutSession(session_id=session.id, url=session.url)

    def expire_checkout(self, session_id: str, *, idempotency_key: str) -> None:
        with _classified():
            self._client.v1.checkout.sessions.expire(
                session_id, options={"idempotency_key": idempotency_key}
            )

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
        """The intent as Stripe has it now, with its charge (captured and refunded amounts)."""
        with _classified():
            intent = self._client.v1.payment_intents.retrieve(intent_id, params={"expand": ["latest_charge"]})
        return intent_state(intent)

    def retrieve_dispute(self, dispute_id: str) -> DisputeState:
        with _classified():
            dispute = self._client.v1.disputes.retrieve(dispute_id).to_dict()
        return _dispute_state(dispute)

    def disputes_of(self, intent_id: str) -> list[DisputeState]:
        """The disputes of the intent's charge, newest first (as Stripe lists them)."""
        with _classified():
            listing = self._client.v1.disputes.list(params={"payment_intent": intent_id, "limit": 10})
        return [_dispute_state(dispute.to_dict()) for dispute in listing.data]

    def retrieve_checkout(self, session_id: str) -> CheckoutState:
        with _classified():
            session = self._client.v1.checkout.sessions.retrieve(session_id).to_dict()
        intent = session.get("payment_intent")
        return CheckoutState(
            session_id=session["id"], status=str(session["status"]),
            paid=session.get("payment_status") == "paid",
            intent_id=intent["id"] if isinstance(intent, dict) else intent,
            amount=session.get("amount_total"), currency=session.get("currency"),
        )


def _dispute_state(dispute: dict[str, Any]) -> DisputeState:
    intent = dispute.get("payment_intent")
    return DisputeState(
        dispute_id=dispute["id"], intent_id=intent["id"] if isinstance(intent, dict) else intent,
        status=str(dispute["status"]), amount=int(dispute["amount"]), currency=str(dispute["currency"]),
        reason=dispute.get("reason"),
    )


@contextmanager
def _classified() -> Iterator[None]:
    """Translate Stripe's exception tree into the domain's three kinds of payment failure."""
    try:
        yield
    except stripe.CardError as exc:
        raise PaymentDeclined(
            str(exc.user_message or "card declined"), details=exc.code, intent_id=_intent_id(exc)
        ) from exc
    except stripe.RateLimitError as exc:
        # Every worker has paused already (adapters.stripe_budget); this message backs off too.
        raise PaymentProviderRateLimited(f"Stripe refused our request rate: {exc.code or 'rate_limit'}") from exc
    except stripe.APIConnectionError as exc:
        raise PaymentProviderUnavailable(f"Stripe unreachable: {type(exc).__name__}") from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        # Our key, not the booking: retried until an operator fixes the configuration.
        raise PaymentProviderUnavailable(f"Stripe refused our API key: HTTP {exc.http_status}") from exc
    except stripe.StripeError as exc:
        if exc.http_status is not None and exc.http_status >= 500:
            raise PaymentProviderUnavailable(f"Stripe failed: HTTP {exc.http_status}") from exc
        message = f"Stripe rejected the request: {exc.user_message or exc}"
        if isinstance(exc, stripe.InvalidRequestError) and exc.code == "charge_disputed":
            raise ChargeDisputed(message, details=exc.code) from exc
        if _refused_for_the_booking(exc):
            raise PaymentRequestInvalid(
                message, details=exc.code or "resource_missing", intent_id=_intent_id(exc)
            ) from exc
        raise PaymentRequestRejected(message, details=exc.code) from exc


def _intent_id(exc: stripe.StripeError) -> str | None:
    """The PaymentIntent a refusal happened on, when Stripe had made one."""
    intent = getattr(exc.error, "payment_intent", None) if exc.error else None
    return intent["id"] if intent else None


def _refused_for_the_booking(exc: stripe.StripeError) -> bool:
    """A refusal of what the booking asks for (its payment method, its amount), as opposed to how
    we asked (a parameter, a reused key, the account's settings), which needs an operator."""
    if not isinstance(exc, stripe.InvalidRequestError):
        return False
    if exc.code == "resource_missing":
        return exc.param in (None, "payment_method")
    # The local Stripe server says "no such object" with a bare 404 and no code.
    return exc.code in ("amount_too_small", "amount_too_large") or (exc.code is None and exc.http_status == 404)


def provider_event(payload: dict[str, Any]) -> ProviderEvent:
    """The ids a Stripe event names, read from its JSON payload (what happened is read back)."""
    kind = str(payload.get("type", ""))
    obj = (payload.get("data") or {}).get("object") or {}
    metadata = obj.get("metadata") or {}
    booking_id = metadata.get("booking_id")
    if kind.startswith("payment_intent."):
        return ProviderEvent(type=kind, intent_id=obj.get("id"), booking_id=booking_id)
    if kind == "charge.refunded":
        return ProviderEvent(type=kind, intent_id=obj.get("payment_intent"), booking_id=booking_id)
    if kind.startswith("charge.dispute."):
        return ProviderEvent(type=kind, intent_id=obj.get("payment_intent"), dispute_id=obj.get("id"))
    if kind.startswith("checkout.session."):
        return ProviderEvent(
            type=kind, intent_id=obj.get("payment_intent"), checkout_session_id=obj.get("id"),
            booking_id=booking_id or obj.get("client_reference_id"),
        )
    return ProviderEvent(type=kind)
