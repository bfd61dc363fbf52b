"""Lapsed holds taken over at once, then paid late.

A client holds a seat (or the places of a small general-admission event) and lets the hold lapse:
3-D Secure left pending, an authorization left unconfirmed, or 3-D Secure failed (awaiting another card). The moment its
`expires_at` passes, another client books the same seat or places (the placement itself expires
the lapsed hold when the sweep has not yet), and right after, the first booking is paid late: the
customer completes 3-D Secure, the dashboard captures the authorization (and the client confirms),
or the client retries with a good card. A late payment may never take the seat back: the lapsed
booking ends with no sale and its money back, and the seat is sold once.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import stripe

from bench.chaos.caller import Caller
from bench.chaos.clients import AUTHENTICATE_CARD, authenticate, seat_request
from bench.chaos.general_admission import make_general_events, places_request
from bench.chaos.observations import Observations
from testkit import stripe_mischief
from testkit.open_events import make_open_events

FLAVOURS = ("3-D Secure completed late", "authorization captured late", "payment retried late")
#: Places the general-admission targets have, all asked for by both bookings.
PLACES = 2


@dataclass
class Lapse:
    flavour: str
    target: str  # "seat" or "places"
    lapsed: str | None = None
    rebooked: str | None = None
    late_answers: Counter[str] = field(default_factory=Counter)


def make_lapse_targets(database_url: str, base_url: str, operator_key: str, observations: Observations,
                       count: int) -> tuple[list[Callable[[str], dict[str, Any]]], list[dict[str, Any]]]:
    """One target per scenario, half of them a seat, half a whole small general-admission event:
    a function from a payment method to the booking request for it; and those events."""
    general = count // 2
    seats = make_open_events(database_url, seats=count - general,
                             starts=[datetime.now(UTC) + timedelta(days=6)])
    event_id, seat_ids = seats[0]
    events = make_general_events(base_url, operator_key, observations, capacity=PLACES, count=general)
    targets: list[Callable[[str], dict[str, Any]]] = [
        (lambda method, s=seat: seat_request(event_id, s, method)) for seat in seat_ids]
    targets += [(lambda method, e=str(e["id"]): places_request(e, PLACES, method)) for e in events]
    random.Random(count).shuffle(targets)
    return targets, events


def play_lapse(first: Caller, second: Caller, target: Callable[[str], dict[str, Any]], flavour: str) -> Lapse:
    """One scenario; what happened, for the checks after draining."""
    record = Lapse(flavour, "places" if "quantity" in target("pm_card_visa") else "seat")
    with first.http, second.http:
        held = _hold(first, target, flavour)
        if held.get("status") is None or "held" not in held:
            record.late_answers[f"never held: {held.get('status')}, payment {held.get('payment_status')}"] += 1
            return record
        record.lapsed = held["id"]
        _wait_for_lapse(first, held)
        record.rebooked = second.book(target("pm_card_visa"))
        _pay_late(first, held, flavour, record)  # as it stood when held: its intent and client secret
        if record.rebooked is not None:
            rebooked = second.wait(record.rebooked,
                                   lambda b: b.get("status") not in (None, "requested", "awaiting_payment"))
            if rebooked.get("status") == "authorized":
                second.post(f"/v1/bookings/{record.rebooked}/confirm")
    return record


def _hold(caller: Caller, target: Callable[[str], dict[str, Any]], flavour: str) -> dict[str, Any]:
    """Book and reach the state the hold is left to lapse in: the booking (with `held`), or how
    far it got."""
    # A declined first attempt rejects a booking: the retried one fails 3-D Secure instead.
    if flavour == FLAVOURS[1]:
        method, reached = "pm_card_visa", _is("authorized", None)
    else:
        try:
            method = caller.stripe.v1.payment_methods.create(params={"type": "card", "card": {
                "number": AUTHENTICATE_CARD, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}).id
        except stripe.StripeError:
            return {"status": "no payment method"}
        reached = _is("awaiting_payment", "requires_action")
    booking_id = caller.book(target(method))
    if booking_id is None:
        return {"status": "refused"}
    # Placement and payment wait behind the load and the faults: allow them a minute.
    booking = caller.wait(booking_id, lambda b: reached(b) or b.get("status") in ("rejected", "expired"), timeout=60)
    if reached(booking) and flavour == FLAVOURS[2]:
        authenticate(caller, booking, success=False)
        reached = _is("awaiting_payment", "failed")
        booking = caller.wait(booking_id, lambda b: reached(b) or b.get("status") in ("rejected", "expired"))
    if reached(booking):
        return {**booking, "held": True}
    return {"status": booking.get("status", "unknown"), "payment_status": (booking.get("payment") or {}).get("status")}


def _is(status: str, payment: str | None) -> Callable[[dict[str, Any]], bool]:
    return lambda b: b.get("status") == status and (payment is None or (b.get("payment") or {}).get("status") == payment)


def _wait_for_lapse(caller: Caller, booking: dict[str, Any]) -> dict[str, Any]:
    """Sleep until the hold's `expires_at` has passed (it may move while a payment fails)."""
    while True:
        expires_at = datetime.fromisoformat(booking.get("expires_at") or datetime.now(UTC).isoformat())
        left = (expires_at - datetime.now(UTC)).total_seconds()
        if left < 0:
            return booking
        time.sleep(left + 0.05)
        booking = caller.booking(booking["id"]) or booking


def _pay_late(caller: Caller, booking: dict[str, Any], flavour: str, record: Lapse) -> None:
    booking_id = booking["id"]
    caller.observations.did(f"lapsed hold re-booked, then {flavour}")
    if flavour == FLAVOURS[0]:
        authenticate(caller, booking, success=True)
        record.late_answers["3-D Secure completed"] += 1
    elif flavour == FLAVOURS[1]:
        intent_id = (booking.get("payment") or {}).get("provider_ref")
        if intent_id:
            caller.relay.withheld.add(intent_id)  # its event is ours to deliver, twice
            try:
                event = stripe_mischief.dashboard_capture(caller.stripe, intent_id)
                caller.postman.schedule(event, [0.0, 1.0])
                record.late_answers["dashboard capture made"] += 1
            except stripe.StripeError:
                record.late_answers["dashboard capture refused (voided first)"] += 1
        answer = caller.post(f"/v1/bookings/{booking_id}/confirm")
        record.late_answers[f"late confirm {answer.status_code if answer is not None else 'unanswered'}"] += 1
    else:
        answer = caller.post(f"/v1/bookings/{booking_id}/payment", {"payment_method": "pm_card_visa"})
        record.late_answers[f"late payment retry {answer.status_code if answer is not None else 'unanswered'}"] += 1


def check_lapses(database_url: str, lapses: list[Lapse]) -> dict[str, Any]:
    """After draining: no lapsed booking kept a sale or money; who took the places, and how."""
    played = [lapse for lapse in lapses if lapse.lapsed is not None]
    ids = [x for lapse in played for x in (lapse.lapsed, lapse.rebooked) if x is not None]
    with psycopg.connect(database_url) as conn:
        rows = {str(r[0]): r[1:] for r in conn.execute(
            "SELECT b.id, b.status, p.status, p.amount_captured, p.amount_refunded,"
            " (SELECT min(at) FROM booking_transitions t WHERE t.booking_id = b.id AND t.to_status = 'expired'),"
            " (SELECT min(at) FROM booking_transitions t WHERE t.booking_id = b.id AND t.to_status = 'awaiting_payment')"
            " FROM bookings b JOIN payments p ON p.booking_id = b.id WHERE b.id = ANY(%s::uuid[])", (ids,))}
    kept, took, by_placement, captured_late = [], 0, 0, 0
    for lapse in played:
        status, payment, captured, refunded, expired_at, _ = rows[str(lapse.lapsed)]
        if status == "confirmed" or captured > refunded or payment == "authorized":
            kept.append((lapse.lapsed, status, payment, captured, refunded))
        captured_late += captured > 0
        again = rows.get(str(lapse.rebooked)) if lapse.rebooked else None
        if again is not None and again[5] is not None:
            took += 1
            by_placement += expired_at == again[5]  # one unit of work: the same `now`
    answers: Counter[str] = Counter()
    for lapse in lapses:
        answers.update(lapse.late_answers)
    return {
        "lapsed holds re-booked at once (seat / places)": " / ".join(
            str(sum(1 for lapse in played if lapse.target == t)) for t in ("seat", "places")),
        "lapsed holds left to lapse but never held": len(lapses) - len(played),
        "re-bookings that took the lapsed places": took,
        "lapsed holds expired by the re-booking's own placement (else by the sweep)": by_placement,
        "lapsed bookings paid late (money captured, then refunded in full)": captured_late,
        "late payments (and holds never reached)": ", ".join(f"{k} {v}" for k, v in sorted(answers.items())),
        "lapsed bookings that kept a sale or money": len(kept),
        "_details lapses": {"kept": kept[:5]},
    }
