"""Events cancelled by an operator while the faults run.

Clients book seats of a few events (held, confirmed, some refunded in part); at set points of the
load an operator cancels them one by one (`POST /v1/events/{id}/cancel`), while workers are being
killed and the broker and PostgreSQL restarted. After draining, every booking of a cancelled event
has settled exactly once: a hold voided (cancelled or expired), a sale refunded in full, nothing
placed after the cancel; and the event's own `cancellation` counts agree.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from bench.chaos.caller import Caller, post_retrying
from bench.chaos.clients import after_sale, confirm, seat_request
from bench.chaos.config import ChaosConfig
from bench.chaos.observations import Observations
from testkit.open_events import make_open_events

FINAL = ("rejected", "expired", "cancelled", "refunded")
LIVE = ("requested", "awaiting_payment", "authorized", "confirmed")


def make_doomed_events(database_url: str, *, seats: int, count: int) -> tuple[list[str], list[str]]:
    """`count` events at one venue of `seats` seats, days ahead (a cancel by the client refunds
    all): the events the operator will cancel, and the seats."""
    now = datetime.now(UTC)
    events = make_open_events(database_url, seats=seats, starts=[now + timedelta(days=5, hours=n) for n in range(count)])
    return [event for event, _ in events], events[0][1] if events else []


def book_doomed_seat(caller: Caller, events: list[str], seat: str) -> bool:
    """A seat at an event not yet cancelled: confirmed, or left held (authorized) for a while.
    False if every such event has been cancelled (the caller books something else)."""
    with caller.observations.lock:
        open_events = [e for e in events if e not in caller.observations.cancelled_events]
    if not open_events:
        return False
    capture = "immediate" if caller.rng.random() < 0.1 else "on_confirm"
    booking_id = caller.book(seat_request(caller.rng.choice(open_events), seat, "pm_card_visa", capture))
    if booking_id is None:
        return True
    booking = caller.wait(booking_id, lambda b: b.get("status") not in (None, "requested", "awaiting_payment"))
    if booking.get("status") == "authorized" and caller.rng.random() < 0.4:
        caller.observations.did("seat of a doomed event held, not confirmed")
    elif booking.get("status") == "authorized":
        confirm(caller, booking)
    else:
        after_sale(caller, booking)
    return True


def cancel_events(base_url: str, operator_key: str, events: list[str], observations: Observations,
                  clients_done: threading.Event, config: ChaosConfig) -> None:
    """Cancel the events one by one, spread over the load: the first just before the broker's
    restart (a quarter of the way), the others while workers keep being killed (what is left
    when the clients are done, at once)."""
    points = [0.22 + 0.6 * n / max(1, len(events) - 1) for n in range(len(events))]
    with httpx.Client(base_url=base_url, trust_env=False, timeout=15) as http:
        for event_id, point in zip(events, points, strict=True):
            while len(observations.accepted) < point * config.requests:
                if clients_done.wait(0.2):
                    break
            asked = datetime.now(UTC)
            answer = post_retrying(http, observations, f"/v1/events/{event_id}/cancel", None,
                                   {"Authorization": f"Bearer {operator_key}"})
            if answer is not None and answer.status_code == 202:
                with observations.lock:
                    observations.cancelled_events[event_id] = (asked, datetime.now(UTC))


def check_event_cancellations(base_url: str, database_url: str, operator_key: str,
                              observations: Observations, planned: int) -> dict[str, Any]:
    """After draining, per cancelled event and per booking it had."""
    cancelled = dict(observations.cancelled_events)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT b.id, b.event_id::text, b.status, b.cancel_reason, p.status, p.amount_captured, p.amount_refunded,"
            # Its status when the fan-out took it, and how many times it reached a final status.
            " (SELECT t.to_status FROM booking_transitions t WHERE t.booking_id = b.id AND t.at <= b.cancel_requested_at"
            "  ORDER BY t.at DESC, t.id DESC LIMIT 1),"
            " (SELECT count(*) FROM booking_transitions t WHERE t.booking_id = b.id AND t.to_status = ANY(%s)),"
            " (SELECT min(at) FROM booking_transitions t WHERE t.booking_id = b.id AND t.to_status = 'awaiting_payment')"
            " FROM bookings b JOIN payments p ON p.booking_id = b.id WHERE b.event_id = ANY(%s::uuid[])",
            (list(FINAL), list(cancelled))).fetchall()
    taken = [r for r in rows if r[3] == "event_cancelled"]
    still_live = [r[0] for r in rows if r[2] in LIVE]
    not_settled = [(r[0], r[2], r[4], r[5], r[6]) for r in taken if not _settled_in_full(r)]
    twice = [r[0] for r in rows if r[8] > 1]
    placed_after = [r[0] for r in rows if r[9] is not None and r[9] > cancelled[r[1]][1]]
    progress = [_progress(base_url, operator_key, event_id) for event_id in cancelled]
    counts_wrong = [p for p in progress if p.get("done", 0) + p.get("failed", 0) != p.get("bookings", -1)]
    at_cancel = {state: sum(1 for r in taken if r[7] in states)
                 for state, states in (("held", ("requested", "awaiting_payment", "authorized")), ("confirmed", ("confirmed",)))}
    return {
        "events cancelled mid-campaign": f"{len(cancelled)} of {planned}",
        "their bookings: all / taken by the cancellation (held / confirmed at the time)":
            f"{len(rows)} / {len(taken)} ({at_cancel['held']} / {at_cancel['confirmed']})",
        "their bookings by status": ", ".join(f"{s} {sum(1 for r in rows if r[2] == s)}"
                                               for s in sorted({r[2] for r in rows})),
        "cancellation progress (bookings / done / failed)": "; ".join(
            f"{p.get('bookings')} / {p.get('done')} / {p.get('failed')}" for p in progress),
        "cancelled events whose done + failed differs from bookings": len(counts_wrong),
        "bookings of cancelled events still live": len(still_live),
        "bookings taken by a cancellation not voided or refunded in full": len(not_settled),
        "bookings of cancelled events settled more than once": len(twice),
        "bookings of cancelled events placed after the cancel": len(placed_after),
        "_details event cancellations": {"live": still_live[:5], "not settled": not_settled[:5], "twice": twice[:5],
                                         "placed after": placed_after[:5], "counts": counts_wrong[:5]},
    }


def _settled_in_full(row: tuple[Any, ...]) -> bool:
    """Voided (nothing captured, no live authorization) or refunded in full: a sale refunded, or
    money a capture in flight took after the cancel (the booking then ends cancelled, never confirmed)."""
    status, payment, captured, refunded = row[2], row[4], row[5], row[6]
    if captured > 0:
        return status in ("refunded", "cancelled") and refunded == captured
    return status in ("cancelled", "expired", "rejected") and payment != "authorized"


def _progress(base_url: str, operator_key: str, event_id: str) -> dict[str, Any]:
    try:
        answer = httpx.get(f"{base_url}/v1/events/{event_id}", headers={"Authorization": f"Bearer {operator_key}"},
                           trust_env=False, timeout=15)
        return dict(answer.json().get("cancellation") or {}) if answer.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
