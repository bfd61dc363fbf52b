"""What Stripe can send to the webhook: the event envelope, and the objects of the events we read.

A signature proves who sent an event, not that its contents make sense: a leaked secret, a test
tool or a bug upstream can sign anything. An event whose shape Stripe could not have produced
(an amount as a string, a negative refund, an object where an id belongs) is refused here, at
the edge, instead of failing in a worker on every retry. For the types whose object the worker
reads, the fields that matter to a payment (ids, amounts, currency, statuses, metadata) are
checked; the rest of Stripe's objects pass through untouched into the ledger.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Stripe's largest amount: twelve digits, in the smallest unit of a currency such as IDR.
MAX_AMOUNT = 999_999_999_999
#: Deeper than any object Stripe sends; bounded so the ledger's JSON writer never recurses too far.
MAX_NESTING = 32

Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
Currency = Annotated[str, Field(pattern=r"^[a-z]{3}$")]
IntentId = Annotated[str, Field(pattern=r"^pi_[A-Za-z0-9_]+$", max_length=255)]
# Stripe's metadata: at most 50 keys of up to 40 characters, values of up to 500.
Metadata = Annotated[dict[Annotated[str, Field(max_length=40)], Annotated[str, Field(max_length=500)]],
                     Field(max_length=50)]


class _StripeObject(BaseModel):
    # Strict: Stripe never sends "100" or 100.0 for an amount, so neither is coerced.
    model_config = ConfigDict(strict=True, extra="ignore")


class PaymentError(_StripeObject):
    code: Annotated[str, Field(max_length=100)] | None = None
    decline_code: Annotated[str, Field(max_length=100)] | None = None


class PaymentIntent(_StripeObject):
    id: IntentId
    amount: Amount | None = None
    amount_capturable: Amount | None = None
    amount_received: Amount | None = None
    currency: Currency | None = None
    status: Literal[
        "requires_payment_method", "requires_confirmation", "requires_action", "processing",
        "requires_capture", "canceled", "succeeded",
    ] | None = None
    metadata: Metadata | None = None
    last_payment_error: PaymentError | None = None


class Charge(_StripeObject):
    id: Annotated[str, Field(pattern=r"^(ch|py)_[A-Za-z0-9_]+$", max_length=255)]
    payment_intent: IntentId | None = None
    amount: Amount | None = None
    amount_captured: Amount | None = None
    amount_refunded: Amount | None = None
    currency: Currency | None = None
    status: Literal["succeeded", "pending", "failed"] | None = None
    metadata: Metadata | None = None


class CheckoutSession(_StripeObject):
    id: Annotated[str, Field(pattern=r"^cs_[A-Za-z0-9_]+$", max_length=255)]
    payment_intent: IntentId | None = None
    amount_total: Amount | None = None
    currency: Currency | None = None
    status: Literal["open", "complete", "expired"] | None = None
    payment_status: Literal["paid", "unpaid", "no_payment_required"] | None = None
    client_reference_id: Annotated[str, Field(max_length=200)] | None = None
    metadata: Metadata | None = None


class Dispute(_StripeObject):
    id: Annotated[str, Field(pattern=r"^(dp|du)_[A-Za-z0-9_]+$", max_length=255)]
    charge: Annotated[str, Field(pattern=r"^(ch|py)_[A-Za-z0-9_]+$", max_length=255)] | None = None
    payment_intent: IntentId | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    status: Literal[
        "warning_needs_response", "warning_under_review", "warning_closed", "needs_response",
        "under_review", "won", "lost", "prevented",
    ] | None = None
    reason: Annotated[str, Field(max_length=100)] | None = None


class EventData(_StripeObject):
    object: dict[str, Any]


class Event(_StripeObject):
    id: Annotated[str, Field(pattern=r"^evt_[A-Za-z0-9_]+$", max_length=255)]
    type: Annotated[str, Field(pattern=r"^[a-z_]+(\.[a-z_]+)+$", max_length=100)]
    created: Annotated[int, Field(ge=0)] | None = None
    livemode: bool | None = None
    data: EventData


def object_model(event_type: str) -> type[_StripeObject] | None:
    """The shape of the object `adapters.stripe.provider_event` reads for this type of event."""
    if event_type.startswith("payment_intent."):
        return PaymentIntent
    if event_type == "charge.refunded":
        return Charge
    if event_type.startswith("checkout.session."):
        return CheckoutSession
    if event_type.startswith("charge.dispute."):
        return Dispute
    return None  # not read: an unknown type is recorded and ignored, whatever its object


def shape_problem(payload: dict[str, Any]) -> str | None:
    """Why Stripe could not have sent this event, or None when it could have."""
    try:
        event = Event.model_validate(payload)
    except ValidationError as ex:
        return _first_error(ex, "")
    model = object_model(event.type)
    try:
        if model is not None:
            model.model_validate(event.data.object)
    except ValidationError as ex:
        return _first_error(ex, "data.object.")
    return None


def _first_error(ex: ValidationError, within: str) -> str:
    first = ex.errors(include_url=False, include_input=False)[0]
    return f"{within}{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def nests_deeper_than(raw: bytes, limit: int) -> bool:
    """Whether valid JSON text nests arrays and objects deeper than `limit`.

    Read from its brackets alone, strings removed: each pass removes the innermost level, at
    C speed, so a body of any shape costs at most `limit` scans and no recursion.
    """
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_A_BRACKET)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = _INNERMOST_PAIR.sub(b"", brackets)
    return bool(brackets)
