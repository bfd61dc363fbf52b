"""Refunds of a disputed charge: Stripe refuses them (`charge_disputed`) while the dispute is open
or lost. The refusal is the refund's answer: the dispute is read back and recorded, the booking
keeps its dispute and shows why its refund waits, nothing is retried; a won dispute lets the
refund go ahead, a lost one (the money went back through it) settles a cancel. The books equal
Stripe's to the cent throughout. Real SDK against the local Stripe server, real workers."""

from __future__ import annotations

from typing import Any

from testkit.stripe_webhooks import stripe_event
from tests.integration.test_catalog import _seated_event, operator  # noqa: F401  (the fixture)
from tests.support import (
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


def _bank(runtime: Any, path: str, **form: str) -> dict[str, Any]:
    return play_at_local_stripe(runtime.context.settings.stripe_api_base, path, **form)


def _stripe_money(runtime: Any, intent_id: str) -> tuple[int, int]:
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    charge = stripe.v1.payment_intents.retrieve(intent_id).to_dict()["latest_charge"]
    return (charge["amount"] if charge["captured"] else 0), charge["amount_refunded"]


def _books(api: Any, booking_id: str) -> tuple[int, int]:
    payment = api.get(f"/v1/bookings/{booking_id}").json["payment"]
    return payment["amount_captured"], payment["amount_refunded"]


def _paid(api: Any, runtime: Any, event_id: str, seat: str) -> dict[str, Any]:
    booking = api.book(seat_request(event_id, [seat], capture="immediate")).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"confirmed"})
    return dict(api.get(f"/v1/bookings/{booking['id']}").json)


def _dispute(runtime: Any, booking: dict[str, Any], *, outcome: str | None = None) -> dict[str, Any]:
    """A dispute of the booking's charge at Stripe (decided, if `outcome`), of which no webhook
    has told us yet."""
    stripe = stripe_client(runtime.context.settings.stripe_api_base)
    charge = stripe.v1.payment_intents.retrieve(booking["payment"]["provider_ref"]).to_dict()["latest_charge"]
    dispute = _bank(runtime, f"/v1/charges/{charge['id']}/_dispute", reason="fraudulent")
    return _bank(runtime, f"/v1/disputes/{dispute['id']}/_resolve", status=outcome) if outcome else dispute


def _no_step_pending(runtime: Any, booking_id: str) -> bool:
    from sqlalchemy import text

    with runtime.context.sessions() as session:
        return session.execute(text("SELECT step IS NULL FROM payments WHERE booking_id = :b"), {"b": booking_id}).scalar()


def test_a_partial_refund_of_a_disputed_charge_waits_for_the_dispute_and_is_not_retried(
    app, api, operator, runtime, worker, outcomes,  # noqa: F811
):
    event, seats = _seated_event(operator)
    booking = _paid(api, runtime, event["id"], seats[0])
    dispute = _dispute(runtime, booking)

    # Our books do not know of the dispute yet: the refund is accepted, and Stripe refuses it.
    assert operator.post(f"/v1/bookings/{booking['id']}/refund", {"amount": 1000}, key=new_key()).status_code == 202
    shown = wait_for(lambda: (b := api.get(f"/v1/bookings/{booking['id']}").json)["payment"].get("dispute") and b,
                     what="the dispute read back after the refused refund")
    assert shown["status"] == "confirmed"
    assert shown["payment"]["dispute"] == {"status": "needs_response", "amount": booking["total_amount"],
                                           "reason": "fraudulent"}
    assert shown["payment"]["refund_blocked"] == "charge_disputed"
    assert _books(api, booking["id"]) == _stripe_money(runtime, booking["payment"]["provider_ref"]) == (5000, 0)
    assert _no_step_pending(runtime, booking["id"])
    assert outcomes.failures == []  # the refusal was the answer: nothing retried, nothing dead-lettered

    # Known now: another refund is refused at once, saying why.
    again = operator.post(f"/v1/bookings/{booking['id']}/refund", {"amount": 500}, key=new_key())
    assert again.status_code == 409 and again.json["error"]["details"] == {"dispute": "needs_response"}

    # Won: the money is ours again, and the refund asked for goes ahead.
    won = _bank(runtime, f"/v1/disputes/{dispute['id']}/_resolve", status="won")
    closed = stripe_event("charge.dispute.closed", won)
    assert post_webhook(app, closed, SECRET).status_code == 200
    wait_for_ledger(runtime.context.sessions, closed["id"])
    wait_for(lambda: _books(api, booking["id"]) == (5000, 1000), what="the refund after the dispute was won")
    assert _stripe_money(runtime, booking["payment"]["provider_ref"]) == (5000, 1000)
    after = api.get(f"/v1/bookings/{booking['id']}").json
    assert after["status"] == "confirmed" and "refund_blocked" not in after["payment"]


def test_an_event_cancellation_counts_an_open_dispute_failed_and_a_lost_one_done(
    app, api, operator, runtime, worker, outcomes,  # noqa: F811
):
    event, seats = _seated_event(operator)
    held = api.book(seat_request(event["id"], seats[:1])).json
    wait_for_statuses(runtime.context.sessions, [held["id"]], {"authorized"})
    plain, open_, lost = (_paid(api, runtime, event["id"], seat) for seat in seats[1:4])
    open_dispute = _dispute(runtime, open_)
    _dispute(runtime, lost, outcome="lost")

    assert operator.post(f"/v1/events/{event['id']}/cancel", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [held["id"]], {"cancelled"})
    wait_for_statuses(runtime.context.sessions, [plain["id"], lost["id"]], {"refunded"})
    progress = wait_for(lambda: (p := api.get(f"/v1/events/{event['id']}").json["cancellation"])["failed"] == 1 and p,
                        what="the disputed booking counted failed")
    assert progress == {"bookings": 4, "done": 3, "failed": 1}

    blocked = api.get(f"/v1/bookings/{open_['id']}").json
    assert blocked["status"] == "confirmed"
    assert blocked["payment"]["refund_blocked"] == "charge_disputed"
    assert blocked["payment"]["dispute"]["status"] == "needs_response"
    charged_back = api.get(f"/v1/bookings/{lost['id']}").json
    assert charged_back["reason"] == "dispute_lost" and charged_back["payment"]["dispute"]["status"] == "lost"
    # Every booking's books equal Stripe's: the chargeback returned the money, not a refund of ours.
    for booking, refunded in ((plain, 5000), (open_, 0), (lost, 0)):
        intent = booking["payment"]["provider_ref"]
        assert _books(api, booking["id"]) == _stripe_money(runtime, intent) == (5000, refunded)
    assert outcomes.failures == []

    # The open dispute is won: the cancel's refund goes ahead and the cancellation is done.
    won = _bank(runtime, f"/v1/disputes/{open_dispute['id']}/_resolve", status="won")
    closed = stripe_event("charge.dispute.closed", won)
    assert post_webhook(app, closed, SECRET).status_code == 200
    wait_for_statuses(runtime.context.sessions, [open_["id"]], {"refunded"})
    assert api.get(f"/v1/events/{event['id']}").json["cancellation"] == {"bookings": 4, "done": 4, "failed": 0}
    assert _stripe_money(runtime, open_["payment"]["provider_ref"]) == (5000, 5000)
