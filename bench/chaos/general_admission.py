"""General admission under contention: events with a capacity, booked by quantity by many clients.

The events are made through the API (an operator's `POST /v1/events` with a `capacity`), small
enough to sell out so that clients contend and lapsed holds are taken over. While the load runs,
a watch samples the places claimed per event (one statement, one snapshot); after draining, the
places sold are counted from the bookings' rows and compared with the capacity and with the
event's own `held`, `sold` and `available`.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from bench.chaos.caller import Caller, post_retrying
from bench.chaos.clients import after_sale, confirm
from bench.chaos.observations import Observations

#: The price of one place: amounts stay easy to check by hand.
PRICE = 2500
LIVE_HOLDS = ("awaiting_payment", "authorized")


def make_general_events(base_url: str, operator_key: str, observations: Observations, *, capacity: int,
                        count: int) -> list[dict[str, Any]]:
    """`count` general-admission events of `capacity` places, on sale from now; the API's answers."""
    now = datetime.now(UTC)
    events = []
    with httpx.Client(base_url=base_url, trust_env=False, timeout=15) as http:
        for n in range(count):
            starts = now + timedelta(days=3, hours=n)
            answer = post_retrying(http, observations, "/v1/events", {
                "name": f"Open air {n} {uuid.uuid4().hex[:6]}", "capacity": capacity, "currency": "EUR",
                "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=4)).isoformat(),
                "prices": {"general": PRICE},
            }, {"Authorization": f"Bearer {operator_key}"})
            if answer is None or answer.status_code != 201:
                raise RuntimeError(f"could not create a general-admission event: {answer and answer.text}")
            events.append(answer.json())
    return events


def places_request(event_id: str, quantity: int, method: str = "pm_card_visa",
                   capture: str = "on_confirm") -> dict[str, Any]:
    return {"event_id": event_id, "quantity": quantity, "customer": {"email": "chaos@example.com"},
            "payment": {"mode": "card", "payment_method": method, "capture": capture}}


def book_places(caller: Caller, event_id: str) -> None:
    """A client wants 1 to 4 places; held, it pays and confirms like any other (or lets the hold go)."""
    rng = caller.rng
    roll = rng.random()
    method = "pm_card_chargeCustomerFail" if roll < 0.03 else "pm_card_visa"
    capture = "immediate" if roll > 0.9 else "on_confirm"
    caller.observations.did("general admission request")
    booking_id = caller.book(places_request(event_id, rng.choice((1, 1, 2, 3, 4)), method, capture))
    if booking_id is None:
        return
    booking = caller.wait(booking_id, lambda b: b.get("status") not in (None, "requested", "awaiting_payment"))
    if booking.get("status") == "authorized":
        confirm(caller, booking)
    else:
        after_sale(caller, booking)


class CapacityWatch:
    """Samples, while the load runs, the places claimed at each general-admission event (lapsed
    holds included: they keep their claim until a placement or the sweep expires them)."""

    def __init__(self, database_url: str, events: list[dict[str, Any]]) -> None:
        self.database_url = database_url
        self.capacity = {str(e["id"]): int(e["capacity"]) for e in events}
        self.samples = 0
        self.most_claimed: dict[str, int] = dict.fromkeys(self.capacity, 0)
        self.over: list[tuple[str, int]] = []

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.3):
            try:
                with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                    claimed = dict(conn.execute(
                        "SELECT event_id::text, sum(quantity) FROM booking_items WHERE holds_inventory"
                        " AND seat_id IS NULL AND event_id = ANY(%s::uuid[]) GROUP BY 1",
                        (list(self.capacity),)).fetchall())
            except psycopg.Error:
                continue  # PostgreSQL is being restarted
            self.samples += 1
            for event_id, places in claimed.items():
                self.most_claimed[event_id] = max(self.most_claimed[event_id], int(places))
                if places > self.capacity[event_id]:
                    self.over.append((event_id, int(places)))


def check_general_admission(base_url: str, database_url: str, operator_key: str,
                            watch: CapacityWatch) -> dict[str, Any]:
    """After draining: places sold and paid for per event, against the capacity and the event's counters."""
    rows = _places_from_rows(database_url, list(watch.capacity))
    shown = _events_as_shown(base_url, operator_key, list(watch.capacity))
    over, counters_wrong, paid_over = [], [], []
    for event_id, capacity in watch.capacity.items():
        held, sold, kept, _, _ = rows.get(event_id, (0, 0, 0, 0, 0))
        if held + sold > capacity:
            over.append((event_id, held, sold, capacity))
        if kept > capacity:
            paid_over.append((event_id, kept, capacity))
        event = shown.get(event_id, {})
        if (event.get("held"), event.get("sold"), event.get("available")) != (held, sold, capacity - held - sold):
            counters_wrong.append((event_id, {k: event.get(k) for k in ("held", "sold", "available")},
                                   {"held": held, "sold": sold}))
    totals = [sum(r[i] for r in rows.values()) for i in range(5)]
    return {
        "general admission: events / places each": f"{len(watch.capacity)} / " + ", ".join(
            str(c) for c in watch.capacity.values()),
        "general admission: bookings placed / rejected unavailable": f"{totals[3]} / {totals[4]}",
        "general admission: places sold (confirmed) / capacity": f"{totals[1]} / {sum(watch.capacity.values())}",
        "general admission: most places claimed in a sample, per event": ", ".join(
            f"{watch.most_claimed[e]}/{c}" for e, c in watch.capacity.items()),
        "general admission: samples taken during the load": watch.samples,
        "general admission: samples over capacity": len(watch.over),
        "general admission: events over capacity after draining (held + sold)": len(over),
        "general admission: events with more places paid for than capacity": len(paid_over),
        "general admission: events whose held/sold/available differ from the rows": len(counters_wrong),
        "_details general admission": {"over": watch.over[:5] + over[:5], "paid over": paid_over[:5],
                                       "counters": counters_wrong[:5]},
    }


def _places_from_rows(database_url: str, event_ids: list[str]) -> dict[str, tuple[int, int, int, int, int]]:
    """Per event: places held by live holds not lapsed, sold (confirmed and claiming), paid for
    (confirmed, or money kept by a booking nobody cancelled, whatever its status and claim), bookings
    placed, bookings rejected unavailable."""
    with psycopg.connect(database_url) as conn:
        return {str(r[0]): tuple(int(v or 0) for v in r[1:]) for r in conn.execute(  # type: ignore[misc]
            "SELECT i.event_id,"
            " sum(i.quantity) FILTER (WHERE i.holds_inventory AND b.status = ANY(%s) AND b.expires_at > now()),"
            " sum(i.quantity) FILTER (WHERE i.holds_inventory AND b.status = 'confirmed'),"
            " sum(i.quantity) FILTER (WHERE b.status = 'confirmed'"
            "   OR (p.amount_captured > p.amount_refunded AND b.cancel_requested_at IS NULL)),"
            " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM booking_transitions t WHERE t.booking_id = b.id"
            "   AND t.to_status = 'awaiting_payment')),"
            " count(*) FILTER (WHERE b.status = 'rejected' AND b.reason = 'unavailable')"
            " FROM booking_items i JOIN bookings b ON b.id = i.booking_id JOIN payments p ON p.booking_id = b.id"
            " WHERE i.event_id = ANY(%s::uuid[]) AND i.seat_id IS NULL GROUP BY 1",
            (list(LIVE_HOLDS), event_ids))}


def _events_as_shown(base_url: str, operator_key: str, event_ids: list[str]) -> dict[str, dict[str, Any]]:
    shown = {}
    with httpx.Client(base_url=base_url, trust_env=False, timeout=15) as http:
        for event_id in event_ids:
            for _ in range(5):
                try:
                    answer = http.get(f"/v1/events/{event_id}", headers={"Authorization": f"Bearer {operator_key}"})
                except httpx.HTTPError:
                    time.sleep(1)
                    continue
                shown[event_id] = dict(answer.json()) if answer.status_code == 200 else {}
                break
    return shown
