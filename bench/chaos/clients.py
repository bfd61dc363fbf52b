"""What the simulated clients do, and the operators and Stripe's dashboard beside them.

Seats nobody else wants, so that money moves (confirm, cancel, refunds, 3-D Secure), and the demo's
contended seats and slots; `confirm` and `after_sale` serve the other kinds of booking too.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import stripe

from bench.chaos.caller import Caller, post_retrying
from bench.chaos.observations import Observations
from testkit import stripe_mischief
from testkit.stripe_webhooks import stripe_event

#: A test card that always asks for 3-D Secure.
AUTHENTICATE_CARD = "4000002500003155"


def _request(rng: random.Random, catalog: dict[str, Any]) -> dict[str, Any]:
    roll = rng.random()
    method = "pm_card_chargeCustomerFail" if roll < 0.05 else "pm_card_visa"
    payment = {"mode": "card", "payment_method": method, "capture": "immediate" if roll > 0.95 else "on_confirm"}
    customer = {"email": "chaos@example.com"}
    if rng.random() < 0.7:
        seats = rng.sample(catalog["seats"], rng.choice((1, 1, 2)))
        return {"event_id": catalog["event_id"], "seat_ids": seats, "customer": customer, "payment": payment}
    start = catalog["day"] + timedelta(minutes=30 * rng.randrange(16))
    return {"resource_id": rng.choice(catalog["resources"]), "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=rng.choice((30, 60, 90)))).isoformat(),
            "customer": customer, "payment": payment}


def book_contended(caller: Caller, catalog: dict[str, Any]) -> None:
    booking_id = caller.book(_request(caller.rng, catalog))
    if booking_id is None:
        return
    action = caller.rng.random()
    if action < 0.3:
        _later(caller.http, caller.observations, caller.headers, booking_id, "confirm")
    elif action < 0.4:
        _later(caller.http, caller.observations, caller.headers, booking_id, "cancel")


def book_open_seat(caller: Caller, event_id: str, seat: str) -> None:
    rng = caller.rng
    if rng.random() < 0.1:
        _book_with_3ds(caller, event_id, seat)
        return
    roll = rng.random()
    method = "pm_card_chargeCustomerFail" if roll < 0.03 else "pm_card_visa"
    capture = "immediate" if roll > 0.9 else "on_confirm"
    booking_id = caller.book(seat_request(event_id, seat, method, capture))
    if booking_id is None:
        return
    booking = caller.wait(booking_id, lambda b: b.get("status") not in (None, "requested", "awaiting_payment"))
    if booking.get("status") == "authorized":
        confirm(caller, booking)
    else:
        after_sale(caller, booking)


def seat_request(event_id: str, seat: str, method: str, capture: str = "on_confirm") -> dict[str, Any]:
    return {"event_id": event_id, "seat_ids": [seat], "customer": {"email": "chaos@example.com"},
            "payment": {"mode": "card", "payment_method": method, "capture": capture}}


def confirm(caller: Caller, booking: dict[str, Any]) -> None:
    """Confirm as the client, or capture in the dashboard first (its event late, twice or never)."""
    rng, booking_id = caller.rng, booking["id"]
    if rng.random() < 0.06:
        dashboard(caller, booking, "capture", lambda intent: stripe_mischief.dashboard_capture(caller.stripe, intent))
        if rng.random() < 0.5:
            return  # the capture's event (if any) or the hold's expiry settles it
    elif rng.random() < 0.03:
        caller.observations.did("hold left to expire")
        return
    caller.post(f"/v1/bookings/{booking_id}/confirm")
    after_sale(caller, caller.wait(booking_id, lambda b: b.get("status") not in (None, "authorized")))


def after_sale(caller: Caller, booking: dict[str, Any]) -> None:
    """What happens to a confirmed booking: mostly nothing; else a cancel or refunds."""
    if booking.get("status") != "confirmed":
        return
    roll, booking_id = caller.rng.random(), booking["id"]
    total = int(booking["total_amount"])
    if roll < 0.12:
        caller.observations.did("client cancel (refund per policy)")
        caller.post(f"/v1/bookings/{booking_id}/cancel")
    elif roll < 0.17:
        caller.observations.did("operator cancel, refund full")
        caller.post(f"/v1/bookings/{booking_id}/cancel", {"refund": "full"}, operator=True)
    elif roll < 0.21:
        caller.observations.did("operator cancel, refund none")
        caller.post(f"/v1/bookings/{booking_id}/cancel", {"refund": "none"}, operator=True)
    elif roll < 0.36:
        for _ in range(caller.rng.choice((1, 1, 2))):
            caller.observations.did("operator partial refund")
            caller.post(f"/v1/bookings/{booking_id}/refund", {"amount": caller.rng.choice((100, 1000, total // 3))},
                        operator=True)
    elif roll < 0.42:
        amount = caller.rng.choice((500, total))
        dashboard(caller, booking, "refund",
                   lambda intent: stripe_mischief.dashboard_refund(caller.stripe, intent, amount))


def dashboard(caller: Caller, booking: dict[str, Any], what: str,
               act: Callable[[str], dict[str, Any]]) -> None:
    """Act on the booking's intent at Stripe directly; its event comes late, twice, or never."""
    intent_id = (booking.get("payment") or {}).get("provider_ref")
    if not intent_id:
        return
    caller.relay.withheld.add(intent_id)  # before acting: the local server's own event is ours to deliver
    try:
        event = act(intent_id)
    except stripe.StripeError:
        return
    delivery = caller.rng.choice(("late", "twice", "never") if caller.silent_dashboard else ("late", "twice"))
    caller.observations.did(f"dashboard {what}, event {delivery}")
    delays = {"late": [caller.rng.uniform(2, 8)], "twice": [0.2, caller.rng.uniform(1, 5)], "never": []}[delivery]
    caller.postman.schedule(event, delays)


def _book_with_3ds(caller: Caller, event_id: str, seat: str) -> None:
    """A card that needs 3-D Secure: authenticated, failed (then maybe another card), or abandoned."""
    try:
        method = caller.stripe.v1.payment_methods.create(params={"type": "card", "card": {
            "number": AUTHENTICATE_CARD, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    except stripe.StripeError:
        return
    booking_id = caller.book(seat_request(event_id, seat, method.id))
    if booking_id is None:
        return
    booking = caller.wait(booking_id, lambda b: (b.get("payment") or {}).get("status") == "requires_action"
                          or b.get("status") not in (None, "requested", "awaiting_payment"))
    if (booking.get("payment") or {}).get("status") != "requires_action":
        return
    roll = caller.rng.random()
    if roll < 0.15:
        _retry_burst(caller, booking_id)
    elif roll < 0.55:
        caller.observations.did("3-D Secure authenticated")
        authenticate(caller, booking, success=True)
    elif roll < 0.8:
        caller.observations.did("3-D Secure failed")
        authenticate(caller, booking, success=False)
        failed = caller.wait(booking_id, lambda b: (b.get("payment") or {}).get("status") == "failed")
        if caller.rng.random() < 0.5 and failed.get("status") == "awaiting_payment":
            caller.post(f"/v1/bookings/{booking_id}/payment", {"payment_method": "pm_card_visa"})
    else:
        caller.observations.did("3-D Secure abandoned")
        return
    authorized = caller.wait(booking_id, lambda b: b.get("status") not in (None, "requested", "awaiting_payment"))
    if authorized.get("status") == "authorized":
        confirm(caller, authorized)


def authenticate(caller: Caller, booking: dict[str, Any], *, success: bool) -> None:
    """The customer completes (or fails) the bank's challenge; Stripe's event follows, sometimes twice."""
    payment = booking.get("payment") or {}
    if not payment.get("provider_ref") or not payment.get("client_secret"):
        return
    try:
        answer = httpx.post(f"{caller.stripe_url}/v1/payment_intents/{payment['provider_ref']}/_authenticate",
                            data={"client_secret": payment["client_secret"], "success": str(success).lower()},
                            headers={"Authorization": "Bearer sk_test_chaos"}, trust_env=False, timeout=10)
        intent = answer.json()
    except (httpx.HTTPError, ValueError):
        return
    if answer.status_code != 200:
        return
    if success:
        event = stripe_event("payment_intent.amount_capturable_updated", intent)
    else:
        event = stripe_event("payment_intent.payment_failed", {
            **intent, "last_payment_error": {"code": "payment_intent_authentication_failure"}})
    caller.postman.schedule(event, caller.rng.choice(([0.0], [0.0, 1.0], [1.5])))


def _retry_burst(caller: Caller, booking_id: str) -> None:
    """Ten payment retries at once on a booking awaiting payment: one is accepted. With good cards
    only, the accepted attempt authorizes the booking, so no later retry may be accepted either
    (a declined attempt would rightly let the next one in)."""
    caller.observations.did("10 concurrent payment retries")
    methods = ["pm_card_visa"] * 10
    barrier = threading.Barrier(len(methods))

    def retry(method: str) -> int:
        with httpx.Client(base_url=caller.http.base_url, trust_env=False, timeout=15) as http:
            barrier.wait()
            answer = post_retrying(http, caller.observations, f"/v1/bookings/{booking_id}/payment",
                           {"payment_method": method}, caller.headers)
            return answer.status_code if answer is not None else 0

    with ThreadPoolExecutor(max_workers=len(methods)) as pool:
        statuses = Counter(pool.map(retry, methods))
    with caller.observations.lock:
        caller.observations.retry_bursts.append((booking_id, statuses))


def _later(http: httpx.Client, observations: Observations, headers: dict[str, str], booking_id: str, action: str) -> None:
    for _ in range(40):
        try:
            status = http.get(f"/v1/bookings/{booking_id}", headers=headers).json().get("status")
        except (httpx.HTTPError, ValueError):
            time.sleep(0.25)
            continue
        if status != "requested" and status != "awaiting_payment":
            break
        time.sleep(0.1)
    if action == "confirm" and status != "authorized":
        return
    post_retrying(http, observations, f"/v1/bookings/{booking_id}/{action}", None, headers)
