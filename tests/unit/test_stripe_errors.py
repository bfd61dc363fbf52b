"""How Stripe's exceptions become the domain's payment failures (no I/O: the SDK's own classes)."""

from __future__ import annotations

import pytest
import stripe

from adapters.stripe import _classified
from domain.errors import (
    ChargeDisputed,
    PaymentDeclined,
    PaymentProviderRateLimited,
    PaymentProviderUnavailable,
    PaymentRequestInvalid,
    PaymentRequestRejected,
)


@pytest.mark.parametrize(("error", "expected"), [
    (stripe.CardError("declined", None, "card_declined", http_status=402), PaymentDeclined),
    (stripe.APIConnectionError("no route"), PaymentProviderUnavailable),
    # Transient, and the whole account's: backed off (adapters.stripe_budget), then retried.
    (stripe.RateLimitError("slow down", code="rate_limit", http_status=429), PaymentProviderRateLimited),
    (stripe.APIError("boom", http_status=500), PaymentProviderUnavailable),
    # Our key, not the booking: the work waits for an operator instead of failing bookings.
    (stripe.AuthenticationError("bad key", http_status=401), PaymentProviderUnavailable),
    (stripe.PermissionError("restricted key", http_status=403), PaymentProviderUnavailable),
    # What the booking asked for: the payment's answer.
    (stripe.InvalidRequestError("No such PaymentMethod", "payment_method", code="resource_missing",
                                http_status=400), PaymentRequestInvalid),
    (stripe.InvalidRequestError("Amount must be at least 50 cents", "amount", code="amount_too_small",
                                http_status=400), PaymentRequestInvalid),
    (stripe.InvalidRequestError("Not Found", None, http_status=404), PaymentRequestInvalid),  # the local server
    # How we asked: an operator's to fix, not the booking's answer.
    (stripe.InvalidRequestError("Received unknown parameter", "foo", code="parameter_unknown",
                                http_status=400), PaymentRequestRejected),
    (stripe.InvalidRequestError("No such customer", "customer", code="resource_missing",
                                http_status=400), PaymentRequestRejected),
    # The dispute holds the money: the refund's answer is the dispute.
    (stripe.InvalidRequestError("Charge ch_1 has been charged back; cannot issue a refund.", None,
                                code="charge_disputed", http_status=400), ChargeDisputed),
    # The same key with other parameters: a bug, and something may have been made under it.
    (stripe.IdempotencyError("keys reused", http_status=400), PaymentRequestRejected),
])
def test_stripe_errors_become_the_domain_failure_that_says_what_to_do(error, expected):
    with pytest.raises(expected) as raised, _classified():
        raise error
    assert type(raised.value) is expected


def test_an_invalid_request_carries_stripes_code():
    with pytest.raises(PaymentRequestInvalid) as raised, _classified():
        raise stripe.InvalidRequestError("No such PaymentMethod", "payment_method", code="resource_missing",
                                         http_status=400)
    assert raised.value.details == "resource_missing"


def test_an_invalid_request_names_the_intent_stripe_made_if_any():
    error = stripe.InvalidRequestError(
        "No such PaymentMethod", "payment_method", code="resource_missing", http_status=400,
        json_body={"error": {"code": "resource_missing", "payment_intent": {"id": "pi_123", "object": "payment_intent"}}},
    )
    with pytest.raises(PaymentRequestInvalid) as raised, _classified():
        raise error
    assert raised.value.intent_id == "pi_123"
