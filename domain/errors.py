"""One base class and a flat set of noun-named errors; `api.errors` maps each to HTTP once."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class of every error the booking rules raise."""

    code = "domain_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    """The thing asked for does not exist or belongs to another client."""

    code = "not_found"


class InvalidRequest(DomainError):
    """A well-formed request that names things which cannot be booked together."""

    code = "validation_error"


class InvalidState(DomainError):
    """The booking is in a state where the requested action is not allowed."""

    code = "invalid_state"


class IdempotencyKeyReused(DomainError):
    """The idempotency key was used before with a different request."""

    code = "idempotency_key_reused"


class RefundExceedsCaptured(DomainError):
    """A refund that would return more than was captured."""

    code = "refund_exceeds_captured"


class PaymentDeclined(DomainError):
    """The payment provider declined the card; a business outcome, not a fault."""

    code = "payment_declined"

    def __init__(self, message: str, *, details: Any = None, intent_id: str | None = None) -> None:
        super().__init__(message, details=details)
        #: The intent the decline happened on; a retry confirms it rather than making another.
        self.intent_id = intent_id


class PaymentProviderUnavailable(DomainError):
    """The payment provider could not be reached or failed transiently; retry later."""

    code = "payment_provider_unavailable"


class PaymentProviderRateLimited(PaymentProviderUnavailable):
    """The provider refused the request for our request rate (429), or our own budget of its rate
    is spent: retried later, with backoff."""


class PaymentRequestRejected(DomainError):
    """The payment provider rejected our request as invalid; a bug or bad data, not retryable."""

    code = "payment_request_rejected"


class PaymentRequestInvalid(PaymentRequestRejected):
    """The provider refused what the booking asked for (a payment method it does not know, an
    amount below its minimum), not how we asked: the payment's answer, as a decline is."""

    def __init__(self, message: str, *, details: Any = None, intent_id: str | None = None) -> None:
        super().__init__(message, details=details)
        #: The intent the refusal happened on, if the provider had made one.
        self.intent_id = intent_id


class ChargeDisputed(PaymentRequestRejected):
    """The provider refuses to refund a charge a dispute holds (open, or lost: the money went back
    to the customer through it): the dispute decides where the money goes."""


class UrlNotAllowed(InvalidRequest):
    """A webhook URL that is not http(s), or that reaches a loopback, private or reserved address."""

    code = "url_not_allowed"


class EndpointLimitReached(InvalidRequest):
    """The client has as many webhook endpoints as it may."""

    code = "endpoint_limit_reached"


class SaleRuleBroken(DomainError):
    """The catalog's rules refuse the booking now: the sale window, or a resource's hours, notice,
    horizon or granularity. `code` names the rule (`sales_closed`, `too_soon`, ...)."""

    def __init__(self, code: str, message: str, *, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.code = code


class SeatHeld(InvalidState):
    """A seat an operator wants to block is held or booked by a live booking."""

    code = "seat_held"


class RefTaken(InvalidState):
    """Another object of the same kind already carries this `ref` (the operator's own id)."""

    code = "ref_taken"
