"""POST /v1/webhooks/stripe: verification, the ledger, and applying each event once in any order.

Simulated: the local Stripe server only sends payment_intent.succeeded / payment_failed, so
events are built here from the real PaymentIntents it holds, and signed the way Stripe signs.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from testkit.stripe_webhooks import sign, stripe_event
from tests.support import (
    first_event,
    ledger,
    new_key,
    post_webhook,
    seat_request,
    stripe_client,
    wait_for_ledger,
    wait_for_statuses,
)

SECRET = "whsec_test_secret"


def _confirmed_booking(api, runtime) -> tuple[dict[str, Any], dict[str, Any]]:
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[:1], capture="immediate")).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"})
    booking = api.get(f"/v1/bookings/{booking['id']}").json
    intent = stripe_client(runtime.context.settings.stripe_api_base).v1.payment_intents.retrieve(
        booking["payment"]["provider_ref"]
    ).to_dict()
    return booking, intent


def _ledger_count(runtime, event_id: str) -> int:
    with runtime.context.sessions() as session:
        return session.execute(text("SELECT count(*) FROM webhook_events WHERE id = :i"), {"i": event_id}).scalar()


def test_a_valid_event_is_recorded_and_applied(app, api, runtime, worker):
    booking, intent = _confirmed_booking(api, runtime)
    event = stripe_event("payment_intent.succeeded", intent)
    result = post_webhook(app, event, SECRET)
    assert result.status_code == 200 and result.json == {"received": True, "duplicate": False}
    row = wait_for_ledger(runtime.context.sessions, event["id"])
    # Our own capture already recorded the money: the event confirms it and changes nothing.
    assert row["outcome"] == "ignored"
    assert api.get(f"/v1/bookings/{booking['id']}").json["payment"]["amount_captured"] == booking["total_amount"]


def test_bad_signature_stale_timestamp_and_wrong_secret_are_400(app, runtime):
    event = stripe_event("payment_intent.succeeded", {"id": "pi_x", "amount": 1, "metadata": {}})
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    bad = app.simulate_post("/v1/webhooks/stripe", body=body, headers={**headers, "Stripe-Signature": "t=1,v1=deadbeef"})
    stale = post_webhook(app, event, SECRET, timestamp=int(time.time()) - 3600)
    wrong = post_webhook(app, event, "whsec_someone_else")
    missing = app.simulate_post("/v1/webhooks/stripe", body=body, headers=headers)
    tampered = app.simulate_post("/v1/webhooks/stripe", body=body.replace(b"pi_x", b"pi_y"),
                                 headers={**headers, "Stripe-Signature": sign(body, SECRET)})
    for result in (bad, stale, wrong, missing, tampered):
        assert result.status_code == 400
        assert result.json["error"]["code"] == "invalid_signature"
    assert _ledger_count(runtime, event["id"]) == 0


def test_malformed_json_that_is_correctly_signed_is_a_400(app, runtime):
    body = b'{"id": "evt_1", "type": '
    result = app.simulate_post("/v1/webhooks/stripe", body=body,
                               headers={"Stripe-Signature": sign(body, SECRET), "Content-Type": "application/json"})
    assert result.status_code == 400 and result.json["error"]["code"] == "malformed_json"


def test_five_parallel_deliveries_of_one_event_are_recorded_and_applied_once(app, api, runtime, worker):
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[1:2])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    booking = api.get(f"/v1/bookings/{booking['id']}").json
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    # Someone cancels the authorization at Stripe (the dashboard, or Stripe voiding it).
    intent = stripe.v1.payment_intents.cancel(booking["payment"]["provider_ref"]).to_dict()
    event = stripe_event("payment_intent.canceled", intent)

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda _: post_webhook(app, event, SECRET), range(5)))
    assert [r.status_code for r in results] == [200] * 5
    assert sorted(r.json["duplicate"] for r in results) == [False, True, True, True, True]
    assert _ledger_count(runtime, event["id"]) == 1
    assert wait_for_ledger(runtime.context.sessions, event["id"])["outcome"] == "applied"
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"cancelled"})
    with runtime.context.sessions() as session:
        transitions = session.execute(text(
            "SELECT count(*) FROM booking_transitions WHERE booking_id = :b AND to_status = 'cancelled'"
        ), {"b": booking["id"]}).scalar()
    assert transitions == 1
    assert api.get(f"/v1/bookings/{booking['id']}").json["reason"] == "payment_canceled"


def test_a_late_payment_failed_after_a_capture_changes_nothing(app, api, runtime, worker):
    booking, intent = _confirmed_booking(api, runtime)
    late = stripe_event("payment_intent.payment_failed", {**intent, "status": "requires_payment_method",
                                                           "last_payment_error": {"code": "card_declined"}})
    assert post_webhook(app, late, SECRET).status_code == 200
    row = wait_for_ledger(runtime.context.sessions, late["id"])
    assert row["outcome"] == "ignored" and "captured" in row["note"]
    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert after["status"] == "confirmed" and after["payment"]["status"] == "captured"


def test_a_canceled_event_after_a_capture_changes_nothing(app, api, runtime, worker):
    booking, intent = _confirmed_booking(api, runtime)
    late = stripe_event("payment_intent.canceled", {**intent, "status": "canceled"})
    assert post_webhook(app, late, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, late["id"])["outcome"] == "ignored"
    assert api.get(f"/v1/bookings/{booking['id']}").json["status"] == "confirmed"


def test_unknown_event_types_and_unknown_intents_are_kept_for_audit(app, runtime, worker):
    unknown_type = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    unknown_intent = stripe_event("payment_intent.succeeded", {"id": "pi_nobody", "amount": 100, "metadata": {}})
    assert post_webhook(app, unknown_type, SECRET).status_code == 200
    assert post_webhook(app, unknown_intent, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, unknown_type["id"])["outcome"] == "ignored"
    assert wait_for_ledger(runtime.context.sessions, unknown_intent["id"])["outcome"] == "unmatched"
    with runtime.context.sessions() as session:
        payload = session.execute(text("SELECT payload FROM webhook_events WHERE id = :i"),
                                  {"i": unknown_intent["id"]}).scalar()
    assert payload == unknown_intent


def test_money_taken_for_a_booking_cancelled_meanwhile_is_refunded_in_full(app, api, runtime, worker):
    """The customer pays (client mode) while the booking is being cancelled: the void is refused,
    the service reconciles with Stripe, finds the money captured, and gives it back."""
    from tests.support import wait_for

    event_id, seats = first_event(runtime.context.sessions)
    body = seat_request(event_id, seats[2:3])
    body["payment"] = {"mode": "client", "capture": "immediate"}
    booking = api.book(body).json
    intent_id = wait_for(lambda: api.get(f"/v1/bookings/{booking['id']}").json["payment"]["provider_ref"])
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    paid = stripe.v1.payment_intents.confirm(intent_id, params={"payment_method": "pm_card_visa"})
    assert paid.status == "succeeded"  # its webhook has not reached us yet

    assert api.post(f"/v1/bookings/{booking['id']}/cancel", key=new_key()).status_code == 202
    final = wait_for(lambda: (b := api.get(f"/v1/bookings/{booking['id']}").json)["payment"]["amount_refunded"] and b)
    assert final["status"] == "cancelled"
    assert final["payment"]["amount_refunded"] == final["payment"]["amount_captured"] == booking["total_amount"]

    late = stripe_event("payment_intent.succeeded", stripe.v1.payment_intents.retrieve(intent_id).to_dict())
    assert post_webhook(app, late, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, late["id"])["outcome"] == "ignored"


def test_an_oversized_event_is_refused_before_verification(app, runtime):
    body = json.dumps(stripe_event("payment_intent.succeeded", {"id": "pi_big", "blob": "x" * 600_000})).encode()
    result = app.simulate_post("/v1/webhooks/stripe", body=body,
                               headers={"Stripe-Signature": sign(body, SECRET), "Content-Type": "application/json"})
    assert result.status_code == 413


def test_signed_events_with_contents_the_ledger_cannot_hold_are_400_not_500(app, runtime):
    for event in (
        stripe_event("payment_intent.succeeded", {"id": "pi_1", "note": "\u0000"}),
        stripe_event("payment_intent.succeeded", {"id": "pi_1"}, event_id="evt_" + "x" * 10_000),
        stripe_event("payment_intent.succeeded", {"id": "pi_1"}, event_id="not-an-event-id"),
    ):
        result = post_webhook(app, event, SECRET)
        assert result.status_code == 400 and result.json["error"]["code"] == "invalid_event"


# --- Events Stripe could not have sent -------------------------------------------------------------

POISON = {
    "data is not an object": ("payment_intent.succeeded", ["pi_3Poison", 12000]),
    "a string amount": ("payment_intent.succeeded", {"id": "pi_3Poison", "amount": 12000,
                                                     "amount_received": "12000", "currency": "eur"}),
    "an amount of 2^40": ("payment_intent.amount_capturable_updated", {
        "id": "pi_3Poison", "amount": 12000, "amount_capturable": 2**40, "currency": "eur",
        "status": "requires_capture"}),
    "a negative refund": ("charge.refunded", {"id": "ch_3Poison", "payment_intent": "pi_3Poison",
                                              "amount": 12000, "amount_refunded": -500, "currency": "eur"}),
    "a status Stripe never has": ("payment_intent.canceled", {"id": "pi_3Poison", "status": "refunded_twice"}),
    "an object where an id belongs": ("checkout.session.completed", {"id": {"$ne": None}}),
}


def _rejected_count(app, event_type: str) -> float:
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from api.metrics import WEBHOOK_EVENTS_REJECTED, generate_latest

    registry = CollectorRegistry()
    registry.register(WEBHOOK_EVENTS_REJECTED)
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == "stripe_webhook_events_rejected_total" and sample.labels == {"type": event_type}:
                return sample.value
    return 0.0


def _webhook_queue_depth(runtime) -> int:
    from tasks.broker import make_inspector

    depths = make_inspector(runtime.broker).depths()
    return sum(q.ready + q.delayed for q in depths if q.name == "webhooks")


@pytest.mark.parametrize("event_type, obj", POISON.values(), ids=POISON.keys())
def test_a_signed_event_stripe_could_not_have_sent_is_rejected_and_never_reaches_a_worker(app, runtime, event_type, obj):
    event = stripe_event(event_type, obj)
    before = _rejected_count(app, event_type)

    result = post_webhook(app, event, SECRET)

    # 200, so Stripe stops delivering it; kept in the ledger with the reason, for operators.
    assert result.status_code == 200, result.text
    assert result.json["rejected"].startswith("data.object")
    row = ledger(runtime.context.sessions, event["id"])
    assert row["outcome"] == "rejected" and row["note"] == result.json["rejected"]
    assert row["processed_at"] is not None
    assert _webhook_queue_depth(runtime) == 0
    assert _rejected_count(app, event_type) == before + 1
    # A redelivery is a duplicate, as for any event.
    assert post_webhook(app, event, SECRET).json["duplicate"] is True


def test_an_event_without_data_is_rejected(app, runtime):
    event = {**stripe_event("payment_intent.succeeded", {"id": "pi_3Poison"}), "data": "nothing"}
    result = post_webhook(app, event, SECRET)
    assert result.status_code == 200 and result.json["rejected"].startswith("data:")
    assert ledger(runtime.context.sessions, event["id"])["outcome"] == "rejected"
    assert _webhook_queue_depth(runtime) == 0


def test_a_signed_event_nested_255_levels_deep_is_a_400_not_a_500(app, runtime):
    deep: Any = []
    for _ in range(255):
        deep = [deep]
    event = stripe_event("payment_intent.succeeded", {"id": "pi_3Deep", "metadata": {}, "extra": deep})
    result = post_webhook(app, event, SECRET)
    assert result.status_code == 400 and result.json["error"]["code"] == "invalid_payload"
    assert ledger(runtime.context.sessions, event["id"]) is None


def test_brackets_inside_strings_do_not_count_as_nesting(app, runtime, worker):
    event = stripe_event("payment_intent.succeeded", {
        "id": "pi_3Brackets", "amount": 100, "currency": "eur", "metadata": {"note": "[" * 100 + '\\"{' * 50},
    })
    assert post_webhook(app, event, SECRET).status_code == 200
    assert wait_for_ledger(runtime.context.sessions, event["id"])["outcome"] == "unmatched"


def test_an_unknown_event_type_is_recorded_and_ignored_whatever_its_object(app, runtime, worker):
    event = stripe_event("invoice.paid", {"id": "in_1", "amount_paid": "not a number", "lines": [[[]]]})
    result = post_webhook(app, event, SECRET)
    assert result.status_code == 200 and "rejected" not in result.json
    assert wait_for_ledger(runtime.context.sessions, event["id"])["outcome"] == "ignored"
