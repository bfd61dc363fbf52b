"""Stripe webhooks: append to the ledger on receipt, apply each event once in a worker.

Receiving does no business work: the event is written to the ledger (unique on its id, so a
duplicate delivery is a no-op) with an outbox message in the same transaction.

Applying treats the event as a trigger to look, never as a fact: it acts only on the intent or
checkout session a booking recorded (metadata anyone can set matches nothing), reads that
payment back from the provider with no lock held, then locks the ledger row and the booking and
applies what the provider says by the one rule of `domain.payment_facts`. An amount or currency
that is not the booking's is recorded as a mismatch for an operator and changes nothing.
`advance_booking` then does what follows (a capture for an immediate booking, a void for a
booking that ended meanwhile).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.engine import transaction
from db.models import Booking, Payment, WebhookEvent
from db.unit_of_work import LockedBooking, UnitOfWork
from domain.lifecycle import RetryHold
from domain.payment_facts import Dispute, FactKind, PaymentFact, apply_fact, intent_fact
from domain.payments import IntentState, PaymentStatus
from domain.ports import PaymentGateway
from domain.webhooks import CHECKOUT_EVENTS, DISPUTE_EVENTS, ProviderEvent
from services import queues
from services.advance import advance_booking
from services.context import Context
from services.outbox import StagedMessage, stage
from services.payment_steps import record_intent_details

log = logging.getLogger(__name__)

EventReader = Callable[[dict[str, Any]], ProviderEvent]


def receive(ctx: Context, payload: dict[str, Any], *, rejected_because: str | None = None) -> bool:
    """Record a verified event and hand it to a worker; False when it was a duplicate delivery.

    The message is sent only after the ledger row has committed, so a worker never looks for
    an event that is not there yet. An event Stripe could not have sent (`rejected_because`)
    is kept for operators, already processed, and no worker sees it.
    """
    with transaction(ctx.sessions) as session:
        if rejected_because is not None:
            return record_rejected_event(session, payload, rejected_because, ctx.clock())
        message = record_event(session, payload)
    if message is None:
        return False
    ctx.dispatch([message])
    return True


def record_event(session: Session, payload: dict[str, Any]) -> StagedMessage | None:
    """Append the event to the ledger; None when it was already there (a duplicate delivery)."""
    inserted = session.execute(
        insert(WebhookEvent)
        .values(id=str(payload["id"]), type=str(payload["type"]), payload=payload)
        .on_conflict_do_nothing()
        .returning(WebhookEvent.id)
    ).first()
    if inserted is None:
        return None
    return stage(session, *queues.APPLY_WEBHOOK_EVENT, str(payload["id"]))


def record_rejected_event(session: Session, payload: dict[str, Any], reason: str, now: datetime) -> bool:
    """Append the event as `rejected` with its reason; False when its id was already there."""
    inserted = session.execute(
        insert(WebhookEvent)
        .values(id=str(payload["id"]), type=str(payload["type"])[:100], payload=payload,
                processed_at=now, outcome="rejected", note=reason)
        .on_conflict_do_nothing()
        .returning(WebhookEvent.id)
    ).first()
    return inserted is not None


def process_event(ctx: Context, event_id: str, read: EventReader, *, replay: bool = False) -> str | None:
    """Apply a ledger event once, then move its booking on; returns the outcome (None: no such event).

    Run again (a redelivery, a retry after a busy booking, an operator's replay), the event is
    not applied twice, but the booking is still moved on.
    """
    found = _look_up(ctx, event_id, read, replay=replay)
    if found is None:
        return None
    if isinstance(found, Done):
        if found.booking_id is not None:
            advance_booking(ctx, found.booking_id)
        return found.outcome
    reading = _read_back(ctx.payments(), found)  # no lock held while the provider answers
    outcome = _apply(ctx, found, reading, replay=replay)
    advance_booking(ctx, found.booking_id)
    return outcome


@dataclass(frozen=True)
class Done:
    """An event processed already, or one that needs no look-up: its outcome stands."""

    outcome: str | None
    booking_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Match:
    """An event that names the payment a booking recorded: look that payment up."""

    event_id: str
    event: ProviderEvent
    booking_id: uuid.UUID
    intent_id: str | None
    checkout_session_id: str | None


def _look_up(ctx: Context, event_id: str, read: EventReader, *, replay: bool) -> Done | Match | None:
    """Which booking's payment the event names, if any; events that need nothing are closed here."""
    with transaction(ctx.sessions) as session:
        row = session.get(WebhookEvent, event_id)
        if row is None:
            return None
        if row.processed_at is not None and (not replay or row.outcome == "rejected"):
            # A rejected event (one Stripe could not have sent) is never applied, not even replayed.
            return Done(row.outcome, row.booking_id)
        event = read(row.payload)
        match = _match(session, event_id, event) if event.handled else None
        if match is not None:
            return match
        if event.handled:
            outcome, note = "unmatched", _unmatched_note(session, event)
        else:
            outcome, note = "ignored", f"{event.type} is not an event this service acts on"
        row.processed_at, row.outcome, row.note = ctx.clock(), outcome, note
    level = logging.WARNING if outcome == "unmatched" else logging.INFO
    log.log(level, "webhook %s %s: %s (%s)", event_id, event.type, outcome, note)
    return Done(outcome)


def _match(session: Session, event_id: str, event: ProviderEvent) -> Match | None:
    """Only the intent or checkout session a booking recorded matches; never the metadata alone."""
    if event.checkout_session_id:
        column, value = Payment.checkout_session_id, event.checkout_session_id
    elif event.intent_id:
        column, value = Payment.intent_id, event.intent_id
    else:
        return None
    found = session.execute(
        select(Payment.booking_id, Payment.intent_id, Payment.checkout_session_id).where(column == value)
    ).first()
    if found is None:
        return None
    return Match(event_id, event, found.booking_id, found.intent_id, found.checkout_session_id)


def _unmatched_note(session: Session, event: ProviderEvent) -> str:
    named = event.checkout_session_id or event.intent_id or "no payment"
    try:
        claimed = uuid.UUID(event.booking_id or "")
    except ValueError:
        return f"no booking recorded {named}"
    if session.get(Booking, claimed) is None:
        return f"no booking recorded {named}"
    # Metadata anyone can set: an operator should see it, but it moves nothing.
    return f"its metadata names booking {claimed}, which did not record {named}"


@dataclass(frozen=True)
class Reading:
    """The provider's record of the payment an event named, as a fact."""

    fact: PaymentFact
    intent: IntentState | None
    #: Why Stripe's record is not about the booking's payment after all.
    unrelated: str | None = None


def _read_back(gateway: PaymentGateway, match: Match) -> Reading:
    if match.event.type in DISPUTE_EVENTS:
        return _dispute_read_back(gateway, match)
    if match.event.type in CHECKOUT_EVENTS:
        assert match.checkout_session_id is not None
        checkout = gateway.retrieve_checkout(match.checkout_session_id)
        if checkout.intent_id is None:
            closed = checkout.status == "expired"
            return Reading(PaymentFact(FactKind.CHECKOUT_CLOSED) if closed else _NOTHING_YET, None)
        intent_id: str | None = checkout.intent_id
    else:
        intent_id = match.intent_id
    assert intent_id is not None
    state = gateway.retrieve(intent_id)
    return Reading(intent_fact(state, reported=True), state)


def _dispute_read_back(gateway: PaymentGateway, match: Match) -> Reading:
    assert match.event.dispute_id is not None
    state = gateway.retrieve_dispute(match.event.dispute_id)
    if state.intent_id != match.intent_id:
        # The event named the booking's intent; Stripe's dispute is about another charge.
        return Reading(PaymentFact(FactKind.DISPUTED), None, unrelated=f"the dispute is on {state.intent_id}")
    dispute = Dispute(state.dispute_id, state.status, state.amount, state.reason)
    return Reading(PaymentFact(FactKind.DISPUTED, currency=state.currency, dispute=dispute), None)


#: An open checkout session nobody has paid on yet.
_NOTHING_YET = PaymentFact(FactKind.INTENT, PaymentStatus.REQUIRES_ACTION, reported=True)


def _apply(ctx: Context, match: Match, reading: Reading, *, replay: bool) -> str | None:
    now = ctx.clock()
    with UnitOfWork(ctx.sessions) as uow:
        row = uow.session.scalars(
            select(WebhookEvent).where(WebhookEvent.id == match.event_id).with_for_update(key_share=True)
        ).one()
        if row.processed_at is not None and not replay:
            return row.outcome  # applied by a redelivery while we looked
        locked = uow.lock(match.booking_id)
        outcome: str
        note: str | None
        if locked is None:  # archived while Stripe was asked: nothing left to change
            outcome, note = "unmatched", f"booking {match.booking_id} was archived"
        else:
            outcome, note = _apply_to(locked, reading, now, ctx.settings.retry_hold)
        row.processed_at, row.booking_id, row.outcome, row.note = now, match.booking_id, outcome, note
        uow.commit()
    level = logging.ERROR if outcome == "mismatch" else logging.INFO
    log.log(level, "webhook %s %s: %s (%s)", match.event_id, match.event.type, outcome, note)
    return outcome


def _apply_to(
    locked: LockedBooking, reading: Reading, now: datetime, retry_hold: RetryHold
) -> tuple[str, str | None]:
    payment, fact, intent = locked.payment, reading.fact, reading.intent
    if reading.unrelated is not None:
        return "unmatched", reading.unrelated
    if intent is not None and payment.intent_id not in (None, intent.intent_id):
        return "ignored", f"the booking's payment is {payment.intent_id}, not {intent.intent_id}"
    consequence = apply_fact(locked.facts(), locked.books(), fact, now=now, retry_hold=retry_hold)
    if consequence.mismatch:
        return "mismatch", consequence.ignored
    if intent is not None:
        # A checkout session's intent is the booking's once read from the session it recorded.
        record_intent_details(payment, intent)
    if consequence.ignored is not None:
        return "ignored", consequence.ignored
    locked.apply(consequence, now)
    return "applied", ", ".join(str(move.to) for move in consequence.moves) or str(consequence.books.status)
