"""Interleavings of refunds, cancels, lapsed leases and hosted checkouts found in review.

Each test drives the workers' own steps (`_settle`, `call_with_recovery`) by hand, in an order two
workers, an operator and a customer can produce, against real PostgreSQL and the local Stripe
server, and then checks that our books equal Stripe's and the customer got what is due.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from adapters.stripe import provider_event
from db.unit_of_work import UnitOfWork
from domain.lifecycle import BookingStatus
from domain.refunds import RefundPolicy
from domain.workflow import Step
from services import requests, webhooks
from services.advance import _settle, advance_booking, call_with_recovery
from services.payment_steps import StepInProgress
from testkit.stripe_webhooks import stripe_event
from tests.support import (
    first_event,
    intents_for,
    play_at_local_stripe,
    post_webhook,
    seat_request,
    stripe_client,
)


def _full_refund_policy(runtime: Any) -> Any:
    """The worker context, with a policy that refunds a client's cancel in full."""
    settings = dataclasses.replace(runtime.context.settings, refund_policy=RefundPolicy.parse("1s:100"))
    return dataclasses.replace(runtime.context, settings=settings)


def _later(ctx: Any, by: timedelta) -> Any:
    return dataclasses.replace(ctx, clock=lambda: datetime.now(UTC) + by)


def _confirmed(api: Any, ctx: Any, seat_index: int) -> uuid.UUID:
    event_id, seats = first_event(ctx.sessions)
    body = seat_request(event_id, seats[seat_index:seat_index + 1], capture="immediate")
    booking_id = uuid.UUID(api.book(body).json["id"])  # no worker runs: the test drives each step
    assert advance_booking(ctx, booking_id) == BookingStatus.CONFIRMED
    return booking_id


def _total(ctx: Any, booking_id: uuid.UUID) -> int:
    with ctx.sessions() as session:
        return int(session.execute(text("SELECT total_amount FROM bookings WHERE id = :b"), {"b": booking_id}).scalar_one())


def _operator_refund(ctx: Any, booking_id: uuid.UUID, amount: int) -> None:
    with UnitOfWork(ctx.sessions) as uow:
        requests.request_refund(uow, booking_id, amount, now=ctx.clock(), request_id=None)
        uow.commit()


def _client_cancel(ctx: Any, booking_id: uuid.UUID) -> None:
    with UnitOfWork(ctx.sessions) as uow:
        client_id = uow.session.execute(text("SELECT client_id FROM bookings WHERE id = :b"), {"b": booking_id}).scalar_one()
        requests.request_cancel(uow, client_id, booking_id, now=ctx.clock(), request_id=None,
                                refund_policy=ctx.settings.refund_policy)
        uow.commit()


def _books(ctx: Any, booking_id: uuid.UUID) -> tuple[str, int]:
    with ctx.sessions() as session:
        row = session.execute(text(
            "SELECT b.status, p.amount_refunded FROM bookings b JOIN payments p ON p.booking_id = b.id WHERE b.id = :b"
        ), {"b": booking_id}).one()
    return row.status, row.amount_refunded


def _stripe_refunded(ctx: Any, booking_id: uuid.UUID) -> int:
    (intent,) = intents_for(stripe_client(ctx.settings.stripe_api_base), str(booking_id))
    return int(intent["latest_charge"]["amount_refunded"])


def test_a_client_cancel_during_an_operators_partial_refund_still_refunds_per_policy(api, runtime):
    ctx = _full_refund_policy(runtime)
    booking_id = _confirmed(api, ctx, 60)
    total = _total(ctx, booking_id)
    _operator_refund(ctx, booking_id, 100)
    operator_call, _ = _settle(ctx, booking_id, None, None)  # worker A claims the partial refund
    assert operator_call is not None and operator_call.step is Step.REFUND and operator_call.amount == 100
    _client_cancel(ctx, booking_id)  # accepted: a cancel is not refused while a refund is in flight

    top_up, _ = _settle(ctx, booking_id, operator_call, call_with_recovery(ctx, booking_id, operator_call))
    assert top_up is not None and top_up.step is Step.REFUND  # the cancel's refund of what is left
    _settle(ctx, booking_id, top_up, call_with_recovery(ctx, booking_id, top_up))
    advance_booking(ctx, booking_id)  # the cancel's own message finds nothing left to do
    assert _stripe_refunded(ctx, booking_id) == total
    assert _books(ctx, booking_id) == ("refunded", total)


def test_a_lost_refund_answer_then_another_partial_refund_does_not_wedge_the_booking(api, runtime):
    ctx = runtime.context
    booking_id = _confirmed(api, ctx, 61)
    _operator_refund(ctx, booking_id, 100)
    lost_call, _ = _settle(ctx, booking_id, None, None)
    assert lost_call is not None
    call_with_recovery(ctx, booking_id, lost_call)  # refunded at Stripe; the worker dies before recording
    _operator_refund(ctx, booking_id, 50)

    later = _later(ctx, ctx.settings.payment_step_lease + timedelta(seconds=1))
    advance_booking(later, booking_id)  # the lapsed claim's retry: same key, now for 150
    assert _stripe_refunded(ctx, booking_id) == 150
    assert _books(ctx, booking_id) == ("confirmed", 150)


def test_a_late_refund_answer_does_not_release_the_next_refunds_claim(api, runtime):
    ctx = runtime.context
    booking_id = _confirmed(api, ctx, 62)
    lease = ctx.settings.payment_step_lease + timedelta(seconds=1)
    later = _later(ctx, lease)
    _operator_refund(ctx, booking_id, 100)
    slow_call, _ = _settle(ctx, booking_id, None, None)  # worker A: its call outlives the lease
    retry_call, _ = _settle(later, booking_id, None, None)  # worker B takes the lapsed claim over
    assert slow_call is not None and retry_call is not None
    assert retry_call.idempotency_key == slow_call.idempotency_key
    _settle(later, booking_id, retry_call, call_with_recovery(later, booking_id, retry_call))
    assert _books(ctx, booking_id) == ("confirmed", 100)

    _operator_refund(ctx, booking_id, 50)
    second_call, _ = _settle(later, booking_id, None, None)  # worker C claims the second refund
    assert second_call is not None and second_call.amount == 50
    slow_answer = call_with_recovery(ctx, booking_id, slow_call)  # Stripe replays refund 1 to A
    claimed_by_a = None
    with contextlib.suppress(StepInProgress):  # dropped as late; C's live claim then turns A away
        claimed_by_a, _ = _settle(later, booking_id, slow_call, slow_answer)
    for call in (second_call, claimed_by_a):
        if call is not None:
            _settle(later, booking_id, call, call_with_recovery(later, booking_id, call))
    advance_booking(later, booking_id)
    assert _stripe_refunded(ctx, booking_id) == 150  # actual: 200, the second refund made twice
    assert _books(ctx, booking_id) == ("confirmed", 150)


def _complete_checkout(ctx: Any, session_id: str, intent_id: str) -> dict[str, Any]:
    return play_at_local_stripe(ctx.settings.stripe_api_base, f"/v1/checkout/sessions/{session_id}/_complete",
                                payment_intent=intent_id)



def test_a_checkout_paid_while_its_expired_booking_closes_the_session_is_refunded_without_its_event(api, runtime):
    ctx = runtime.context
    event_id, seats = first_event(ctx.sessions)
    body = seat_request(event_id, seats[63:64])
    body["payment"] = {"mode": "checkout", "capture": "immediate"}
    booking_id = uuid.UUID(api.book(body).json["id"])
    assert advance_booking(ctx, booking_id) == BookingStatus.AWAITING_PAYMENT
    with ctx.sessions() as session:
        session_id, total = session.execute(text(
            "SELECT p.checkout_session_id, b.total_amount FROM payments p JOIN bookings b ON b.id = p.booking_id "
            "WHERE b.id = :b"), {"b": booking_id}).one()

    later = _later(ctx, ctx.settings.hold_ttl + timedelta(seconds=1))
    void_call, status = _settle(later, booking_id, None, None)  # the hold ran out: expire, close the session
    assert status == BookingStatus.EXPIRED and void_call is not None and void_call.expire_session
    stripe = stripe_client(ctx.settings.stripe_api_base)
    intent = stripe.v1.payment_intents.create(params={  # the customer pays on the page, still open
        "amount": total, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True,
        "metadata": {"booking_id": str(booking_id)},
    })
    _complete_checkout(ctx, session_id, intent.id)  # its checkout.session.completed not delivered yet
    # "This Checkout Session is complete": the session is read back, and its intent recorded.
    refund_call, _ = _settle(later, booking_id, void_call, call_with_recovery(later, booking_id, void_call))
    assert refund_call is not None and refund_call.step is Step.REFUND  # money kept for an expired booking
    _settle(later, booking_id, refund_call, call_with_recovery(later, booking_id, refund_call))

    assert stripe.v1.payment_intents.retrieve(intent.id).latest_charge.amount_refunded == total


def test_a_session_stripe_expired_first_does_not_leave_the_expired_bookings_void_pending(api, runtime):
    # Stripe expires a session at the booking's expires_at when the hold is 31 minutes or more, so its
    # expiry and our sweep's race; or the sweep's void met an outage and reconciliation runs it later.
    ctx = runtime.context
    event_id, seats = first_event(ctx.sessions)
    body = seat_request(event_id, seats[64:65])
    body["payment"] = {"mode": "checkout", "capture": "on_confirm"}
    booking_id = uuid.UUID(api.book(body).json["id"])
    assert advance_booking(ctx, booking_id) == BookingStatus.AWAITING_PAYMENT
    with ctx.sessions() as session:
        session_id = session.execute(text("SELECT checkout_session_id FROM payments WHERE booking_id = :b"),
                                     {"b": booking_id}).scalar_one()
    stripe_client(ctx.settings.stripe_api_base).v1.checkout.sessions.expire(session_id)  # Stripe's own expiry

    later = _later(ctx, ctx.settings.hold_ttl + timedelta(seconds=1))
    assert advance_booking(later, booking_id) == BookingStatus.EXPIRED
    with ctx.sessions() as session:
        step = session.execute(text("SELECT step FROM payments WHERE booking_id = :b"), {"b": booking_id}).scalar()
    assert step is None


def test_a_dashboard_refund_applied_while_our_refund_is_in_flight_is_not_lost(app, api, runtime):
    ctx = runtime.context
    booking_id = _confirmed(api, ctx, 65)
    _operator_refund(ctx, booking_id, 100)
    call, _ = _settle(ctx, booking_id, None, None)
    assert call is not None and call.refunded_before == 0
    stripe = stripe_client(ctx.settings.stripe_api_base)
    (intent,) = intents_for(stripe, str(booking_id))
    stripe.v1.refunds.create(params={"payment_intent": intent["id"], "amount": 50})  # from the dashboard
    (intent,) = intents_for(stripe, str(booking_id))
    event = stripe_event("charge.refunded", {**intent["latest_charge"], "metadata": {"booking_id": str(booking_id)}})
    assert post_webhook(app, event, "whsec_test_secret").status_code == 200
    with contextlib.suppress(StepInProgress):  # applied; advancing the booking meets our live claim
        webhooks.process_event(ctx, event["id"], provider_event)
    assert _books(ctx, booking_id) == ("confirmed", 50)

    _settle(ctx, booking_id, call, call_with_recovery(ctx, booking_id, call))
    assert _stripe_refunded(ctx, booking_id) == 150
    assert _books(ctx, booking_id) == ("confirmed", 150)  # actual: 100


def test_a_full_dashboard_refund_before_ours_is_refused_at_stripe_and_counted_once(api, runtime):
    """Found by the fault campaign: a booking refunded in full from the dashboard, its event not
    yet arrived, is refunded by us too. Stripe refuses a refund past the charge's unrefunded amount
    (the local server now does as well: it used to refund twice), and the refused refund reads
    Stripe's total back: the books count the money once."""
    ctx = runtime.context
    booking_id = _confirmed(api, ctx, 66)
    total = _total(ctx, booking_id)
    _operator_refund(ctx, booking_id, total)
    stripe = stripe_client(ctx.settings.stripe_api_base)
    (intent,) = intents_for(stripe, str(booking_id))
    stripe.v1.refunds.create(params={"payment_intent": intent["id"]})  # from the dashboard; no event yet
    assert advance_booking(ctx, booking_id) == BookingStatus.REFUNDED
    assert _stripe_refunded(ctx, booking_id) == total
    assert _books(ctx, booking_id) == ("refunded", total)


def test_a_partial_dashboard_refund_before_ours_leaves_the_rest_to_a_new_refund(api, runtime):
    """The partial form of the race above: Stripe refuses our refund (more than the charge has
    left); Stripe's total is recorded and the rest goes as a new refund, with its own key."""
    ctx = runtime.context
    booking_id = _confirmed(api, ctx, 67)
    total = _total(ctx, booking_id)
    _operator_refund(ctx, booking_id, total)
    stripe = stripe_client(ctx.settings.stripe_api_base)
    (intent,) = intents_for(stripe, str(booking_id))
    stripe.v1.refunds.create(params={"payment_intent": intent["id"], "amount": 500})  # dashboard; no event yet
    assert advance_booking(ctx, booking_id) == BookingStatus.REFUNDED
    assert _stripe_refunded(ctx, booking_id) == total
    assert _books(ctx, booking_id) == ("refunded", total)
    with ctx.sessions() as session:
        assert session.execute(text("SELECT refund_number FROM payments WHERE booking_id = :b"),
                               {"b": booking_id}).scalar_one() == 2
