"""Payment modes, retries and refunds, end to end with real workers and the local Stripe server.

Simulated here, because the local Stripe server cannot produce them: Checkout Sessions are never
completed by a customer (tests create the PaymentIntent the hosted page would, and send the
`checkout.session.*` event), and webhooks are built from the real objects the local server
holds, wrapped in Stripe's event envelope and signed the way Stripe signs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from adapters.stripe import provider_event
from db.unit_of_work import UnitOfWork
from domain.lifecycle import BookingStatus
from domain.refunds import RefundPolicy
from domain.workflow import Step
from services import requests, webhooks
from services.advance import _release_claim, _settle, advance_booking, call_with_recovery
from services.payment_steps import StepInProgress
from testkit.stripe_webhooks import stripe_event
from tests.support import (
    ApiClient,
    first_event,
    intents_for,
    new_key,
    play_at_local_stripe,
    post_webhook,
    seat_request,
    stripe_client,
    wait_for,
    wait_for_ledger,
    wait_for_statuses,
)

SECRET = "whsec_test_secret"


def _booking(api: ApiClient, runtime: Any, body: dict[str, Any], status: set[str]) -> dict[str, Any]:
    result = api.book(body)
    assert result.status_code == 202, result.json
    wait_for_statuses(runtime.context.sessions, [result.json["id"]], status)
    return api.get(f"/v1/bookings/{result.json['id']}").json


def _mode(body: dict[str, Any], mode: str, capture: str = "on_confirm") -> dict[str, Any]:
    body["payment"] = {"mode": mode, "capture": capture}
    return body


def _wait_payment(api: ApiClient, booking_id: str, predicate) -> dict[str, Any]:
    from tests.support import wait_for

    return wait_for(lambda: (b := api.get(f"/v1/bookings/{booking_id}").json) and predicate(b) and b,
                    what="the booking's payment")


def test_client_mode_exposes_a_client_secret_and_is_authorized_by_the_webhook(app, api, runtime, worker):
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    event_id, seats = first_event(runtime.context.sessions)
    booking = _booking(api, runtime, _mode(seat_request(event_id, seats[:1]), "client"), {"awaiting_payment"})
    booking = _wait_payment(api, booking["id"], lambda b: b["payment"]["client_secret"])
    intent_id = booking["payment"]["provider_ref"]
    assert booking["payment"]["client_secret"].startswith(intent_id)

    # The front end confirms with the client secret; Stripe then sends amount_capturable_updated.
    intent = stripe.v1.payment_intents.confirm(intent_id, params={"payment_method": "pm_card_visa"})
    assert intent.status == "requires_capture"
    event = stripe_event("payment_intent.amount_capturable_updated", {**intent.to_dict(), "amount_capturable": intent.amount})
    assert post_webhook(app, event, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, event["id"])["outcome"] == "applied"
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})

    assert api.post(f"/v1/bookings/{booking['id']}/confirm", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"})
    assert len(intents_for(stripe, booking["id"])) == 1


def _checkout_booking(api: ApiClient, runtime: Any, seat: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A checkout-mode booking once its session exists, and that session as Stripe holds it."""
    event_id, _ = first_event(runtime.context.sessions)
    booking = _booking(api, runtime, _mode(seat_request(event_id, [seat]), "checkout"), {"awaiting_payment"})
    booking = _wait_payment(api, booking["id"], lambda b: b["payment"]["checkout_url"])
    with runtime.context.sessions() as session:
        session_id = session.execute(text("SELECT checkout_session_id FROM payments WHERE booking_id = :b"),
                                     {"b": booking["id"]}).scalar()
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    return booking, stripe.v1.checkout.sessions.retrieve(session_id).to_dict()


def _complete_checkout(runtime: Any, session_id: str, intent_id: str) -> dict[str, Any]:
    """The customer pays on the hosted page (the local server's session completes with the intent)."""
    return play_at_local_stripe(runtime.context.settings.stripe_api_base,
                                f"/v1/checkout/sessions/{session_id}/_complete", payment_intent=intent_id)



def test_checkout_mode_exposes_a_url_and_follows_the_session_events(app, api, runtime, worker):
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    _, seats = first_event(runtime.context.sessions)
    booking, session_obj = _checkout_booking(api, runtime, seats[1])
    assert session_obj["metadata"]["booking_id"] == booking["id"]

    # Simulated customer on the hosted page: the manual-capture intent Checkout would create.
    intent = stripe.v1.payment_intents.create(params={
        "amount": booking["total_amount"], "currency": "eur", "payment_method": "pm_card_visa",
        "capture_method": "manual", "confirm": True, "metadata": {"booking_id": booking["id"]},
    })
    completed = stripe_event("checkout.session.completed", _complete_checkout(runtime, session_obj["id"], intent.id))
    assert post_webhook(app, completed, SECRET).status_code == 200
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    assert api.post(f"/v1/bookings/{booking['id']}/confirm", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"})
    assert stripe.v1.payment_intents.retrieve(intent.id).status == "succeeded"


def test_an_expired_checkout_session_expires_the_booking_and_frees_the_seat(app, api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    booking, session_obj = _checkout_booking(api, runtime, seats[2])
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    expired = stripe_event("checkout.session.expired", stripe.v1.checkout.sessions.expire(session_obj["id"]).to_dict())
    assert post_webhook(app, expired, SECRET).status_code == 200

    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"expired"})
    assert api.get(f"/v1/bookings/{booking['id']}").json["reason"] == "checkout_expired"
    seat = next(s for s in api.get(f"/v1/events/{event_id}/seats").json["seats"] if s["id"] == str(seats[2]))
    assert seat["status"] == "available"


def test_payment_retry_after_a_decline_keeps_the_hold_and_then_authorizes(api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    body = seat_request(event_id, seats[3:4])
    del body["payment"]["payment_method"]
    booking = _booking(api, runtime, body, {"awaiting_payment"})
    first_expiry = booking["expires_at"]

    declined = api.post(f"/v1/bookings/{booking['id']}/payment", {"payment_method": "pm_card_chargeCustomerFail"}, key=new_key())
    assert declined.status_code == 202
    declined_booking = _wait_payment(api, booking["id"], lambda b: b["payment"]["status"] == "failed")
    assert declined_booking["status"] == "awaiting_payment"
    assert declined_booking["expires_at"] >= first_expiry

    retried = api.post(f"/v1/bookings/{booking['id']}/payment", {"payment_method": "pm_card_visa"}, key=new_key())
    assert retried.status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    assert [pi["status"] for pi in intents_for(stripe, booking["id"])] == ["requires_capture"]


def test_payment_retry_is_refused_unless_awaiting_payment(api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    booking = _booking(api, runtime, seat_request(event_id, seats[4:5]), {"authorized"})
    result = api.post(f"/v1/bookings/{booking['id']}/payment", {"payment_method": "pm_card_visa"}, key=new_key())
    assert result.status_code == 409 and result.json["error"]["code"] == "invalid_state"


def test_cancelling_a_confirmed_booking_refunds_per_policy_and_frees_the_seat(app, api, runtime, worker):
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    event_id, seats = first_event(runtime.context.sessions)
    booking = _booking(api, runtime, seat_request(event_id, seats[5:6], capture="immediate"), {"confirmed"})

    assert api.post(f"/v1/bookings/{booking['id']}/cancel", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"refunded"})
    refunded = api.get(f"/v1/bookings/{booking['id']}").json
    # The demo event starts 30 days out: more than 48 h notice refunds everything.
    assert refunded["payment"]["amount_refunded"] == refunded["total_amount"]
    (intent,) = intents_for(stripe, booking["id"])
    assert intent["latest_charge"]["amount_refunded"] == refunded["total_amount"]
    seat = next(s for s in api.get(f"/v1/events/{event_id}/seats").json["seats"] if s["id"] == str(seats[5]))
    assert seat["status"] == "available"

    # Stripe's charge.refunded then reconciles to what is already recorded: nothing changes.
    charge_event = stripe_event("charge.refunded", {**intent["latest_charge"], "metadata": {"booking_id": booking["id"]}})
    assert post_webhook(app, charge_event, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, charge_event["id"])["outcome"] == "ignored"
    assert api.get(f"/v1/bookings/{booking['id']}").json["payment"]["amount_refunded"] == refunded["total_amount"]


def _claim_refund(ctx: Any, booking_id: str) -> Any:
    """Accept the client's cancel and claim the refund it leads to, as a worker would; no message is sent."""
    with UnitOfWork(ctx.sessions) as uow:
        requests.request_cancel(uow, _client_of(uow.session, booking_id), uuid.UUID(booking_id),
                                now=ctx.clock(), request_id=None, refund_policy=ctx.settings.refund_policy)
        uow.commit()
    call, _ = _settle(ctx, uuid.UUID(booking_id), None, None)
    assert call is not None and call.step is Step.REFUND
    return call


def _client_of(session: Any, booking_id: str) -> uuid.UUID:
    return session.execute(text("SELECT client_id FROM bookings WHERE id = :id"), {"id": booking_id}).scalar_one()


@pytest.mark.parametrize("percent", [100, 50])
def test_a_refund_recorded_after_stripe_reported_it_counts_once(app, api, runtime, worker, percent):
    # The refund's answer is lost and Stripe's charge.refunded (a running total) is applied first;
    # the retried refund then answers with the same refund: recorded once, not added again
    # (before: a CHECK violation at 100%, twice the refund at 50%).
    ctx = dataclasses.replace(runtime.context, settings=dataclasses.replace(
        runtime.context.settings, refund_policy=RefundPolicy.parse(f"48h:{percent}")
    ))
    stripe = stripe_client(ctx.settings.stripe_api_base)
    event_id, seats = first_event(ctx.sessions)
    booking = _booking(api, runtime, seat_request(event_id, seats[9:10], capture="immediate"), {"confirmed"})
    refund = booking["total_amount"] * percent // 100
    call = _claim_refund(ctx, booking["id"])
    result = call_with_recovery(ctx, uuid.UUID(booking["id"]), call)

    (intent,) = intents_for(stripe, booking["id"])
    assert intent["latest_charge"]["amount_refunded"] == refund
    charge_event = stripe_event("charge.refunded", {**intent["latest_charge"], "metadata": {"booking_id": booking["id"]}})
    assert post_webhook(app, charge_event, SECRET).status_code == 200
    assert wait_for_ledger(ctx.sessions, charge_event["id"])["outcome"] == "applied"

    _settle(ctx, uuid.UUID(booking["id"]), call, result)
    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert after["status"] == "refunded"
    assert after["payment"]["amount_refunded"] == refund


def test_a_refund_retried_after_its_lease_and_answered_again_counts_once(app, api, runtime, worker):
    # Found by the fault campaign: the refund's answer is lost, Stripe's charge.refunded is applied,
    # the claim lapses and is taken over (the retry's claim now sees the refund on the books), and
    # Stripe answers the retry, under the same key, with the same refund. It was counted twice:
    # the books said 100% refunded where Stripe had refunded 50%.
    ctx = dataclasses.replace(runtime.context, settings=dataclasses.replace(
        runtime.context.settings, refund_policy=RefundPolicy.parse("48h:50")
    ))
    event_id, seats = first_event(ctx.sessions)
    booking = _booking(api, runtime, seat_request(event_id, seats[19:20], capture="immediate"), {"confirmed"})
    booking_id, half = uuid.UUID(booking["id"]), booking["total_amount"] // 2
    first = _claim_refund(ctx, booking["id"])
    answer = call_with_recovery(ctx, booking_id, first)  # made at Stripe; its answer is lost
    stripe = stripe_client(ctx.settings.stripe_api_base)
    (intent,) = intents_for(stripe, booking["id"])
    charge_event = stripe_event("charge.refunded", {**intent["latest_charge"], "metadata": {"booking_id": booking["id"]}})
    assert post_webhook(app, charge_event, SECRET).status_code == 200
    wait_for_ledger(ctx.sessions, charge_event["id"])

    later = dataclasses.replace(ctx, clock=lambda: datetime.now(UTC) + ctx.settings.payment_step_lease)
    retry, _ = _settle(later, booking_id, None, None)
    assert retry is not None and retry.idempotency_key == first.idempotency_key
    _settle(later, booking_id, retry, dataclasses.replace(answer, state=stripe_intent_state(stripe, intent["id"])))
    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert (after["status"], after["payment"]["amount_refunded"]) == ("refunded", half)


def stripe_intent_state(stripe: Any, intent_id: str) -> Any:
    """Stripe's record of the intent as the adapter reads it after a refund."""
    from adapters.stripe import intent_state

    return intent_state(stripe.v1.payment_intents.retrieve(intent_id, params={"expand": ["latest_charge"]}))


def test_a_cancel_refunds_only_what_stripe_has_not_refunded_already(app, api, runtime, worker):
    # Part of the money went back from Stripe's dashboard first: the policy's 100% tops it up.
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    event_id, seats = first_event(runtime.context.sessions)
    booking = _booking(api, runtime, seat_request(event_id, seats[10:11], capture="immediate"), {"confirmed"})
    (intent,) = intents_for(stripe, booking["id"])
    stripe.v1.refunds.create(params={"payment_intent": intent["id"], "amount": 400})
    (intent,) = intents_for(stripe, booking["id"])
    charge_event = stripe_event("charge.refunded", {**intent["latest_charge"], "metadata": {"booking_id": booking["id"]}})
    assert post_webhook(app, charge_event, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, charge_event["id"])["outcome"] == "applied"
    assert api.get(f"/v1/bookings/{booking['id']}").json["payment"]["amount_refunded"] == 400

    assert api.post(f"/v1/bookings/{booking['id']}/cancel", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"refunded"})
    (intent,) = intents_for(stripe, booking["id"])
    assert intent["latest_charge"]["amount_refunded"] == booking["total_amount"]
    assert api.get(f"/v1/bookings/{booking['id']}").json["payment"]["amount_refunded"] == booking["total_amount"]


def test_a_payment_method_stripe_does_not_know_rejects_the_booking_and_frees_the_seat(api, runtime, worker):
    # Stripe refuses the request itself (no intent is made): an answer, like a decline, not a fault
    # to retry; the booking must not keep its seat with the step pending for ever.
    event_id, seats = first_event(runtime.context.sessions)
    body = seat_request(event_id, seats[11:12], payment_method="pm_does_not_exist")
    booking = _booking(api, runtime, body, {"rejected"})
    assert booking["reason"] == "payment_method_invalid"  # told apart from a declined card
    assert booking["payment"]["status"] == "failed"
    seat = next(s for s in api.get(f"/v1/events/{event_id}/seats").json["seats"] if s["id"] == str(seats[11]))
    assert seat["status"] == "available"
    with runtime.context.sessions() as session:
        row = session.execute(
            text("SELECT step, decline_code FROM payments WHERE booking_id = :id"), {"id": booking["id"]}
        ).one()
    assert row.step is None
    # Stripe says resource_missing; the local server gives no code, so our fallback shows.
    assert row.decline_code in ("resource_missing", "invalid_request")


def test_money_taken_after_the_client_cancelled_does_not_confirm_the_booking(app, api, runtime, worker):
    # The client cancels while the customer is paying on the hosted page, and Stripe's
    # checkout.session.completed arrives before the cancel's worker: cancelled, refunded in full.
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    event_id, seats = first_event(runtime.context.sessions)
    booking = _booking(api, runtime, _mode(seat_request(event_id, seats[12:13]), "checkout", "immediate"),
                       {"awaiting_payment"})
    booking = _wait_payment(api, booking["id"], lambda b: b["payment"]["checkout_url"])
    with UnitOfWork(runtime.context.sessions) as uow:
        session_id = uow.session.execute(text("SELECT checkout_session_id FROM payments WHERE booking_id = :b"),
                                         {"b": booking["id"]}).scalar()
        requests.request_cancel(uow, _client_of(uow.session, booking["id"]), uuid.UUID(booking["id"]),
                                now=datetime.now(UTC), request_id=None,
                                refund_policy=runtime.context.settings.refund_policy)  # accepted, its message not sent yet
        uow.commit()
    intent = stripe.v1.payment_intents.create(params={
        "amount": booking["total_amount"], "currency": "eur", "payment_method": "pm_card_visa",
        "confirm": True, "metadata": {"booking_id": booking["id"]},
    })
    assert intent.status == "succeeded"
    completed = stripe_event("checkout.session.completed", _complete_checkout(runtime, session_id, intent.id))
    assert post_webhook(app, completed, SECRET).status_code == 200

    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"cancelled"})
    wait_for(lambda: api.get(f"/v1/bookings/{booking['id']}").json["payment"]["amount_refunded"]
             == booking["total_amount"], what="the full refund")
    assert stripe.v1.payment_intents.retrieve(intent.id).latest_charge.amount_refunded == booking["total_amount"]


def test_an_answer_that_outlived_its_claim_does_not_overwrite_what_came_after(api, runtime):
    # Worker A's authorize outlives its lease; the step is claimed again, authorized, confirmed and
    # captured; A's late "authorized, nothing captured" must not be written over the capture.
    ctx = runtime.context
    event_id, seats = first_event(ctx.sessions)
    booking_id = uuid.UUID(api.book(seat_request(event_id, seats[13:14])).json["id"])  # no worker runs
    late_call, _ = _settle(ctx, booking_id, None, None)
    assert late_call is not None and late_call.step is Step.AUTHORIZE
    late_answer = call_with_recovery(ctx, booking_id, late_call)

    later = dataclasses.replace(ctx, clock=lambda: datetime.now(UTC) + ctx.settings.payment_step_lease)
    assert advance_booking(later, booking_id) == BookingStatus.AUTHORIZED
    with UnitOfWork(ctx.sessions) as uow:
        requests.request_confirm(uow, _client_of(uow.session, str(booking_id)), booking_id,
                                 now=later.clock(), request_id=None)
        uow.commit()
    assert advance_booking(later, booking_id) == BookingStatus.CONFIRMED

    _settle(later, booking_id, late_call, late_answer)
    after = api.get(f"/v1/bookings/{booking_id}").json
    assert after["status"] == "confirmed"
    assert after["payment"]["status"] == "captured"
    assert after["payment"]["amount_captured"] == after["total_amount"]


def test_a_call_that_outlived_its_lease_releases_only_its_own_claim(api, runtime):
    # Worker A's claim lapsed and worker B claimed the step again; A's call then fails: A must not
    # free B's live claim (a third worker would call Stripe beside B).
    ctx = runtime.context
    event_id, seats = first_event(ctx.sessions)
    booking_id = uuid.UUID(api.book(seat_request(event_id, seats[14:15])).json["id"])  # no worker runs
    late_call, _ = _settle(ctx, booking_id, None, None)
    later = dataclasses.replace(ctx, clock=lambda: datetime.now(UTC) + ctx.settings.payment_step_lease)
    live_call, _ = _settle(later, booking_id, None, None)
    assert late_call is not None and live_call is not None and live_call.claimed_at != late_call.claimed_at

    _release_claim(ctx, late_call)
    with ctx.sessions() as session:
        started = session.execute(text("SELECT step_started_at FROM payments WHERE booking_id = :b"),
                                  {"b": booking_id}).scalar_one()
    assert started == live_call.claimed_at


def _payment_row(ctx: Any, booking_id: Any) -> Any:
    with ctx.sessions() as session:
        return session.execute(text("SELECT * FROM payments WHERE booking_id = :b"), {"b": str(booking_id)}).mappings().one()


def _client_booking(api: ApiClient, ctx: Any, seat: Any) -> tuple[uuid.UUID, str]:
    """A client-mode booking awaiting the front end's confirm, placed here (no worker runs): its id and intent."""
    event_id, _ = first_event(ctx.sessions)
    booking_id = uuid.UUID(api.book(_mode(seat_request(event_id, [seat]), "client")).json["id"])
    assert advance_booking(ctx, booking_id) == BookingStatus.AWAITING_PAYMENT
    intent_id = _payment_row(ctx, booking_id)["intent_id"]
    assert intent_id
    return booking_id, intent_id


def test_an_intent_is_closed_when_the_booking_ends_before_its_accepted_retry_runs(api, runtime):
    # POST /payment resets the payment for a new attempt; the client cancels before that attempt
    # runs. The old intent's client secret is still in the customer's hands: it must be cancelled.
    ctx = runtime.context
    _, seats = first_event(ctx.sessions)
    booking_id, intent_id = _client_booking(api, ctx, seats[15])
    with UnitOfWork(ctx.sessions) as uow:
        client_id = _client_of(uow.session, str(booking_id))
        requests.request_payment_retry(uow, client_id, booking_id, "pm_card_visa", now=ctx.clock(), request_id=None)
        requests.request_cancel(uow, client_id, booking_id, now=ctx.clock(), request_id=None,
                                refund_policy=ctx.settings.refund_policy)
        uow.commit()

    assert advance_booking(ctx, booking_id) == BookingStatus.CANCELLED
    stripe = stripe_client(ctx.settings.stripe_api_base)
    assert stripe.v1.payment_intents.retrieve(intent_id).status == "canceled"


def test_a_decline_answered_after_the_customer_paid_the_same_intent_does_not_undo_it(app, api, runtime):
    # A retry's confirm with another card is declined; meanwhile the customer confirms the same
    # intent on the front end and Stripe's webhook says so first. The worker's older decline must
    # not mark the payment failed (the guard would never see the live authorization).
    ctx = runtime.context
    _, seats = first_event(ctx.sessions)
    booking_id, intent_id = _client_booking(api, ctx, seats[16])
    with UnitOfWork(ctx.sessions) as uow:
        requests.request_payment_retry(uow, _client_of(uow.session, str(booking_id)), booking_id,
                                       "pm_card_chargeCustomerFail", now=ctx.clock(), request_id=None)
        uow.commit()
    call, _ = _settle(ctx, booking_id, None, None)
    assert call is not None and call.step is Step.AUTHORIZE and call.intent_id == intent_id
    declined = call_with_recovery(ctx, booking_id, call)
    assert declined.declined is not None

    stripe = stripe_client(ctx.settings.stripe_api_base)
    intent = stripe.v1.payment_intents.confirm(intent_id, params={"payment_method": "pm_card_visa"})
    event = stripe_event("payment_intent.amount_capturable_updated", {**intent.to_dict(), "amount_capturable": intent.amount})
    assert post_webhook(app, event, SECRET).status_code == 200
    with contextlib.suppress(StepInProgress):  # it applies the event, then finds the retry's step claimed
        webhooks.process_event(ctx, event["id"], provider_event)

    _settle(ctx, booking_id, call, declined)
    after = api.get(f"/v1/bookings/{booking_id}").json
    assert after["status"] == "authorized"
    assert after["payment"]["status"] == "authorized"


def test_a_checkout_booking_cancelled_after_a_failed_card_expires_its_session(app, api, runtime, worker):
    # The customer's card failed on the hosted page (payment_intent.payment_failed names the
    # session's intent); the client then cancels. Stripe cancels such an intent only through its
    # session: the session must be expired, or the page could still take money for a freed seat.
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    _, seats = first_event(runtime.context.sessions)
    booking, session_obj = _checkout_booking(api, runtime, seats[17])
    intent = stripe.v1.payment_intents.create(params={
        "amount": booking["total_amount"], "currency": "eur", "capture_method": "manual",
        "metadata": {"booking_id": booking["id"]},
    }).to_dict()
    failed = stripe_event("payment_intent.payment_failed", {**intent, "last_payment_error": {"code": "card_declined"}})
    assert post_webhook(app, failed, SECRET).status_code == 200
    # The session's intent is not the booking's until the session completes: nothing to apply.
    assert wait_for_ledger(runtime.context.sessions, failed["id"])["outcome"] == "unmatched"

    assert api.post(f"/v1/bookings/{booking['id']}/cancel", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"cancelled"})
    wait_for(lambda: _payment_row(runtime.context, booking["id"])["step"] is None, what="the void recorded")
    assert stripe.v1.checkout.sessions.retrieve(session_obj["id"]).status == "expired"
    assert _payment_row(runtime.context, booking["id"])["status"] == "canceled"


def test_an_event_of_a_checkout_session_the_booking_does_not_use_is_unmatched(app, api, runtime, worker):
    # A session created before a lost answer (its retry made the booking's session under a new key)
    # expires on its own later: that must not expire the booking whose own session is open.
    _, seats = first_event(runtime.context.sessions)
    booking, session_obj = _checkout_booking(api, runtime, seats[18])
    orphan = {**session_obj, "id": "cs_test_orphan", "status": "expired"}
    expired = stripe_event("checkout.session.expired", orphan)
    assert post_webhook(app, expired, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, expired["id"])["outcome"] == "unmatched"
    assert api.get(f"/v1/bookings/{booking['id']}").json["status"] == "awaiting_payment"
