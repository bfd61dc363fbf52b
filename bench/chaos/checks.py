"""After the load: wait until the system has drained, then turn the invariants into figures."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import psycopg
import stripe

from bench.chaos.cluster import Cluster
from bench.chaos.config import SETTLED
from bench.chaos.observations import Observations
from testkit import stripe_mischief

#: The reads a webhook's read-back makes at Stripe.
READ_BACK_PATHS = ("/v1/payment_intents/", "/v1/checkout/sessions/", "/v1/disputes/")


def drain(cluster: Cluster, timeout: float, *, since: datetime,
          also: Mapping[str, Callable[[], int]] = MappingProxyType({})) -> tuple[float, dict[str, float]]:
    """Until every booking has settled and the payment audit has compared every payment whose
    money can still move with Stripe since the load stopped (dashboard moves without events),
    and each of `also` counts nothing left to do. Returns the seconds it took, and for each
    condition the seconds until it last had something left."""
    started = time.monotonic()
    waits = {"bookings and webhook events": lambda: sum(_unsettled(cluster.database_url)),
             "payment audit": lambda: _unaudited(cluster.database_url, since), **also}
    busy = dict.fromkeys(waits, 0.0)
    while time.monotonic() - started < timeout:
        left = {name: count() for name, count in waits.items()}
        elapsed = time.monotonic() - started
        busy.update({name: round(elapsed, 1) for name, count in left.items() if count != 0})
        if not any(left.values()):
            return elapsed, busy
        time.sleep(1)
    return time.monotonic() - started, busy


def _unaudited(database_url: str, since: datetime) -> int:
    try:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM payments WHERE intent_id IS NOT NULL"
                " AND status IN ('authorized', 'captured', 'refunded')"
                " AND NOT (status = 'refunded' AND amount_refunded >= amount_captured)"
                " AND (audited_at IS NULL OR audited_at < %s)", (since,),
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return -1


def _unsettled(database_url: str) -> tuple[int, int]:
    """(bookings not done, webhook events not processed); (-1, -1) while PostgreSQL is down."""
    try:
        with psycopg.connect(database_url) as conn:
            stuck = conn.execute(
                "SELECT count(*) FROM bookings b JOIN payments p ON p.booking_id = b.id WHERE"
                # A running hold ('authorized') still ends on its own (the sweep expires it, then voids
                # at Stripe); _check lists Stripe before it reads the database, so nothing may still be
                # due to change.
                " b.status IN ('requested', 'awaiting_payment', 'authorized') OR p.step IS NOT NULL"
                " OR (b.cancel_requested_at IS NOT NULL AND b.status = 'confirmed')"
                " OR (b.status = 'confirmed' AND p.refund_requested > p.amount_refunded)"
                " OR (b.status IN ('rejected', 'expired', 'cancelled') AND p.status = 'authorized')"
                # Money taken for a booking that ended unsold goes back in full (domain.workflow).
                " OR (b.status IN ('rejected', 'expired', 'cancelled') AND p.amount_captured > p.amount_refunded)"
                # A cancelled event's bookings are all cancelled by workers (its fan-out retries).
                " OR (b.status NOT IN ('rejected', 'expired', 'cancelled', 'refunded')"
                "     AND b.event_id IN (SELECT id FROM events WHERE status = 'cancelled'))"
            ).fetchone()[0]
            events = conn.execute("SELECT count(*) FROM webhook_events WHERE processed_at IS NULL").fetchone()[0]
            return int(stuck), int(events)
    except psycopg.Error:
        return -1, -1


def check_invariants(cluster: Cluster, observations: Observations) -> dict[str, Any]:
    client = stripe.StripeClient("sk_test_chaos", base_addresses={"api": cluster.stripe.url})
    everything = [pi.to_dict() for pi in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()]
    intents = [pi for pi in everything if pi["id"] not in observations.foreign_intents
               and (pi.get("metadata") or {}).get("made_by") != stripe_mischief.FOREIGN["made_by"]]
    per_booking = Counter((pi.get("metadata") or {}).get("booking_id") for pi in intents)
    stuck, unprocessed = _unsettled(cluster.database_url)
    with psycopg.connect(cluster.database_url) as conn:
        bookings = {str(r[0]): r[1:] for r in conn.execute(
            "SELECT b.id, b.status, b.total_amount, p.intent_id, p.status, p.amount_captured, p.amount_refunded,"
            " p.attempt FROM bookings b JOIN payments p ON p.booking_id = b.id")}
        double_seats = conn.execute(
            "SELECT count(*) FROM (SELECT event_id, seat_id FROM booking_items WHERE holds_inventory"
            " AND seat_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()[0]
        # A sale is a confirmed booking, or money kept by a booking nobody cancelled (a cancel may keep
        # a fee and free the seat), whether or not its row still claims the seat.
        sold_twice = conn.execute(
            "SELECT count(*) FROM (SELECT i.event_id, i.seat_id FROM booking_items i JOIN bookings b ON b.id = i.booking_id"
            " JOIN payments p ON p.booking_id = b.id WHERE i.seat_id IS NOT NULL AND (b.status = 'confirmed'"
            " OR (p.amount_captured > p.amount_refunded AND b.cancel_requested_at IS NULL)) GROUP BY 1, 2"
            " HAVING count(*) > 1) d"
        ).fetchone()[0]
        sold_unclaimed = conn.execute(
            "SELECT count(*) FROM booking_items i JOIN bookings b ON b.id = i.booking_id"
            " WHERE b.status = 'confirmed' AND NOT i.holds_inventory").fetchone()[0]
        slot_overlaps = conn.execute(
            "SELECT count(*) FROM booking_items a JOIN booking_items b ON a.resource_id = b.resource_id"
            " AND a.id < b.id AND a.period && b.period WHERE a.holds_inventory AND b.holds_inventory").fetchone()[0]
        ledger = {r[0]: r[1] for r in conn.execute(
            "SELECT id, outcome FROM webhook_events WHERE id = ANY(%s)",
            (list(observations.foreign_events | {p[1] for p in observations.poison}),))}
        outcomes = Counter(r[0] for r in conn.execute("SELECT outcome FROM webhook_events"))
    settled = sum(1 for b in observations.accepted if b in bookings and bookings[b][0] in SETTLED)
    confirmed = [b for b, row in bookings.items() if row[0] == "confirmed"]
    by_intent = {pi["id"]: pi for pi in intents}
    bad_captures = [b for b in confirmed if not _captured_once(by_intent.get(bookings[b][2] or ""), bookings[b][1])]
    live_orphans = [pi["id"] for pi in intents if pi["status"] == "requires_capture"
                    and bookings.get((pi.get("metadata") or {}).get("booking_id"), ("",))[0] != "authorized"]
    money_mismatch = [b for b, row in bookings.items() if not _money_matches(row[:6], by_intent.get(row[2] or ""))]
    recorded = {row[2] for row in bookings.values()}
    money_elsewhere = [pi["id"] for pi in intents if pi["id"] not in recorded
                       and pi["status"] in ("succeeded", "requires_capture")]
    over_attempts = [b for b, row in bookings.items() if per_booking.get(b, 0) > row[6]]
    over_refunded = [pi["id"] for pi in intents if _stripe_money(pi)[1] > _stripe_money(pi)[0]]
    in_outage = lambda t: any(a <= t <= b for a, b in observations.outages)  # noqa: E731
    server_errors = [(w, s) for t, w, s in observations.answers if s >= 500 and not in_outage(t)]
    foreign_acted = sorted(e for e in observations.foreign_events if ledger.get(e, "unmatched") != "unmatched")
    poison_wrong = [(w, s, ledger.get(e)) for t, e, w, s in observations.poison
                    if (s not in (200, 400) and not in_outage(t)) or ledger.get(e, "rejected") != "rejected"]
    bursts = [dict(statuses) for _, statuses in observations.retry_bursts]
    by_status = Counter(row[0] for row in bookings.values())
    ours = [sum(row[i] for row in bookings.values()) for i in (4, 5)]
    theirs = [sum(_stripe_money(by_intent[row[2]])[i] for row in bookings.values() if row[2] in by_intent)
              for i in (0, 1)]
    return {
        "requests accepted (202)": len(observations.accepted),
        "requests refused at once by a sale rule (422)": sum(observations.refused_by_rule.values()),
        "bookings by status": ", ".join(f"{status} {count}" for status, count in sorted(by_status.items())),
        "requests settled": settled,
        "seats double booked": double_seats,
        "slot overlaps": slot_overlaps,
        "seats sold twice (confirmed, or money kept uncancelled)": sold_twice,
        "confirmed bookings whose items claim nothing": sold_unclaimed,
        "max PaymentIntents per booking": max(per_booking.values(), default=0),
        "bookings with more PaymentIntents than payment attempts": len(over_attempts),
        "confirmed bookings": len(confirmed),
        "confirmed share of accepted (%)": round(100 * len(confirmed) / max(1, len(observations.accepted)), 1),
        "bookings with money refunded (in part or in full)": sum(1 for row in bookings.values() if row[5] > 0),
        "captured / refunded, our books": f"{ours[0]} / {ours[1]}",
        "captured / refunded, Stripe": f"{theirs[0]} / {theirs[1]}",
        "confirmed without exactly one capture": len(bad_captures),
        "live authorizations without a held booking": len(live_orphans),
        "money taken on a booking's intents it does not record": len(money_elsewhere),
        "bookings whose money differs from Stripe": len(money_mismatch),
        "intents refunded more than captured at Stripe": len(over_refunded),
        "bookings stuck (a step pending, a request not carried out)": stuck,
        "webhook events never processed": unprocessed,
        "webhook outcomes": ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items(), key=lambda i: str(i[0]))),
        "events for other intents (booking's metadata)": len(observations.foreign_events),
        "events for other intents that acted on a booking": len(foreign_acted),
        "poison events sent": len(observations.poison),
        "poison events not refused (200 rejected or 400)": len(poison_wrong),
        "concurrent payment retry bursts (10 each)": len(bursts),
        "retry bursts with more than one 202": sum(1 for b in bursts if b.get(202, 0) > 1),
        "retry bursts with exactly one 202": sum(1 for b in bursts if b.get(202, 0) == 1),
        "5xx to valid requests outside the PostgreSQL outage": len(server_errors),
        # The webhook route answers 500 when its ledger write fails, so that Stripe delivers it again.
        "500 answers to clients": sum(1 for _, w, s in observations.answers if s == 500 and w != "webhook"),
        "500 answers to webhooks (ledger down: Stripe retries)": sum(
            1 for _, w, s in observations.answers if s == 500 and w == "webhook"),
        "503 answers during the outage": sum(1 for t, _, s in observations.answers if s == 503 and in_outage(t)),
        "_details": {"bad_captures": bad_captures[:5], "orphans": live_orphans[:5],
                     "money": [(b, bookings[b], _stripe_money(by_intent.get(bookings[b][2] or "")))
                               for b in money_mismatch[:10]],
                     "money elsewhere": money_elsewhere[:5], "over attempts": over_attempts[:5],
                     "foreign acted": [(e, ledger.get(e)) for e in foreign_acted[:5]], "poison": poison_wrong[:5],
                     "bursts": [b for b in bursts if b.get(202, 0) > 1][:5], "errors": server_errors[:5]},
    }


def read_back_cost(cluster: Cluster) -> dict[str, Any]:
    """The reads at Stripe that webhooks cost: every GET of an intent, a checkout session or a
    dispute through the proxy (the workers' own recovery reads included), per applied event."""
    gets = sum(1 for method, path in list(cluster.proxy.forwarded)
               if method == "GET" and path.startswith(READ_BACK_PATHS))
    with psycopg.connect(cluster.database_url) as conn:
        applied, read_back = conn.execute(
            "SELECT count(*) FILTER (WHERE outcome = 'applied'),"
            " count(*) FILTER (WHERE outcome IN ('applied', 'ignored', 'mismatch')) FROM webhook_events").fetchone()
    return {"Stripe GETs (intents, sessions, disputes)": gets,
            "Stripe GETs per applied webhook event": round(gets / max(1, applied), 2),
            "Stripe GETs per event read back (applied, ignored, mismatch)": round(gets / max(1, read_back), 2)}


def settle_times_after_kills(database_url: str, booking_ids: set[str]) -> dict[str, Any]:
    """From 202 (the booking's row) to its first settled status, for bookings whose placement
    message a worker kill interrupted: the target is within 30 s of the kill, so under 30 s."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM min(t.at) - b.created_at) FROM bookings b"
            " LEFT JOIN booking_transitions t ON t.booking_id = b.id AND t.to_status = ANY(%s)"
            " WHERE b.id = ANY(%s::uuid[]) GROUP BY b.id", (list(SETTLED), list(booking_ids))).fetchall()
    seconds = sorted(float(r[0]) if r[0] is not None else float("inf") for r in rows)
    p99 = seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))] if seconds else 0.0
    return {
        "bookings in flight at a kill": len(seconds),
        "202 to settled for them, max / p99 (s)": f"{max(seconds, default=0.0):.1f} / {p99:.1f}",
    }


def _captured_once(intent: dict[str, Any] | None, total: int) -> bool:
    if intent is None or intent["status"] != "succeeded":
        return False
    charge = intent.get("latest_charge") or {}
    return isinstance(charge, dict) and charge.get("captured") and int(charge["amount"]) == total


def _stripe_money(intent: dict[str, Any] | None) -> tuple[int, int]:
    """(captured, refunded) on the intent's latest charge, as Stripe records them."""
    charge = (intent or {}).get("latest_charge")
    if not isinstance(charge, dict):
        return 0, 0
    captured = int(charge.get("amount", 0)) if intent and intent["status"] == "succeeded" else 0
    return captured, int(charge.get("amount_refunded") or 0)


def _money_matches(row: tuple[Any, ...], intent: dict[str, Any] | None) -> bool:
    status, total, intent_id, payment_status, captured, refunded = row
    if intent_id is None:
        return payment_status in ("none", "failed", "canceled") and captured == 0
    if intent is None:
        return False
    expected = {"requires_capture": "authorized", "succeeded": ("captured", "refunded"), "canceled": "canceled",
                "requires_payment_method": ("failed", "canceled")}.get(intent["status"])
    status_ok = payment_status in expected if isinstance(expected, tuple) else payment_status == expected
    return status_ok and (captured, refunded) == _stripe_money(intent)


#: Figures that count broken things: each must be 0.
MUST_BE_ZERO = [
    "seats double booked", "slot overlaps", "seats sold twice (confirmed, or money kept uncancelled)",
    "confirmed bookings whose items claim nothing", "confirmed without exactly one capture",
    "live authorizations without a held booking", "bookings whose money differs from Stripe",
    "5xx to valid requests outside the PostgreSQL outage", "500 answers to clients",
    "bookings with more PaymentIntents than payment attempts", "money taken on a booking's intents it does not record",
    "intents refunded more than captured at Stripe", "bookings stuck (a step pending, a request not carried out)",
    "webhook events never processed", "events for other intents that acted on a booking",
    "poison events not refused (200 rejected or 400)", "retry bursts with more than one 202",
    # General admission, lapsed holds, cancelled events, clients' webhooks (absent when not played).
    "general admission: samples over capacity", "general admission: events over capacity after draining (held + sold)",
    "general admission: events with more places paid for than capacity",
    "general admission: events whose held/sold/available differ from the rows",
    "lapsed bookings that kept a sale or money",
    "cancelled events whose done + failed differs from bookings", "bookings of cancelled events still live",
    "bookings taken by a cancellation not voided or refunded in full",
    "bookings of cancelled events settled more than once", "bookings of cancelled events placed after the cancel",
    "notifications: transitions without exactly one event",
    "notifications: transitions without exactly one delivery per subscribed endpoint",
    "notifications: events of a transition that never happened", "notifications: deliveries not succeeded",
    "notifications: deliveries never received", "notifications: received events never recorded",
    "notifications: deliveries with a bad signature",
]


def failures(figures: dict[str, Any]) -> list[str]:
    broken = [name for name in MUST_BE_ZERO if figures.get(name, 0) != 0]
    if figures["requests settled"] != figures["requests accepted (202)"]:
        broken.append("requests settled")
    cancelled, _, planned = str(figures.get("events cancelled mid-campaign", "0 of 0")).split()
    if cancelled != planned:
        broken.append("events cancelled mid-campaign")
    return broken
