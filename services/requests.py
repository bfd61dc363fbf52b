"""What the API records when a client asks for something; the work itself is left to workers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.errors import ForeignKeyViolation
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from db.models import Booking, BookingItem, BookingTransition, OutboxMessage, Payment
from db.queries import catalog, resources
from db.queries.bookings import (
    BookingView,
    NewBookingRows,
    insert_booking_request,
    insert_booking_request_as_priced,
    starts_at_of,
    view_of,
)
from db.queries.catalog import EventLabel, ResourceLabel, SeatLabel
from db.unit_of_work import LockedBooking, UnitOfWork
from domain import lifecycle, pricing
from domain.availability import Interval
from domain.errors import (
    InvalidRequest,
    InvalidState,
    NotFound,
    RefundExceedsCaptured,
    SaleRuleBroken,
)
from domain.lifecycle import BookingStatus
from domain.payments import (
    CaptureMode,
    PaymentMode,
    PaymentStatus,
    RefundChoice,
    dispute_blocks_refunds,
    ensure_new_attempt_allowed,
)
from domain.refunds import RefundPolicy, cancel_refund_total
from domain.sales import SALES_CLOSED, SaleWindow, sales_refusal
from domain.schedule import SlotRefusal, slot_refusal
from services import queues
from services.context import Context
from services.idempotency import IdempotentRequest, KeyTaken, Outcome, Reply, answer_once
from services.outbox import StagedMessage, outbox_message, stage


@dataclass(frozen=True)
class NewBooking:
    customer_email: str
    customer_name: str | None
    payment_mode: PaymentMode
    capture_mode: CaptureMode
    payment_method: str | None
    event_id: uuid.UUID | None = None
    seat_ids: Sequence[uuid.UUID] = ()
    #: Places at a general-admission event (instead of seats).
    quantity: int | None = None
    resource_id: uuid.UUID | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


def submit_booking(
    ctx: Context, idempotent: IdempotentRequest, request: NewBooking, *, now: datetime, request_id: str | None,
    represent: Callable[[BookingView], Reply],
) -> Reply:
    """Record a booking in `requested` with its priced items, and send its placement; once per key.

    The API's hot path, no transaction around its statements: the catalog read takes no lock and
    sees what it would see inside one (READ COMMITTED), and everything the request records is
    written by one statement, atomic on its own, together with the key's answer. Seats are
    usually priced from what the process remembers of the catalog (`services.seat_sales`), and
    then that statement is the only one: it writes only if the catalog still says the same.
    """

    def attempt() -> Outcome:
        booking = _new_booking(idempotent.client_id, request, now=now, request_id=request_id)
        staged, message = outbox_message(queues.PLACE_BOOKING, str(booking.id), request_id=request_id)
        new = _NewRequest(idempotent, request, booking, message, now, represent)
        try:
            reply = _record_as_remembered(ctx, new) or _record_as_read(ctx, new)
        except IntegrityError as exc:
            if not isinstance(exc.orig, ForeignKeyViolation):
                raise
            # A catalog import removed a seat between our read and our write (the statement
            # wrote nothing): read again, and the catalog refuses it as it now is.
            if request.event_id is not None:
                ctx.seat_sales.forget(request.event_id)
            reply = _record_as_read(ctx, new)
        return Outcome(reply, [staged])

    return answer_once(ctx, idempotent, attempt)


@dataclass(frozen=True)
class _NewRequest:
    idempotent: IdempotentRequest
    request: NewBooking
    booking: Booking
    message: OutboxMessage
    now: datetime
    represent: Callable[[BookingView], Reply]


def _record_as_remembered(ctx: Context, new: _NewRequest) -> Reply | None:
    """Seats priced from what the process remembers of the catalog, recorded only if the catalog
    still says so: one statement, committed with the other requests' of the moment. None:
    recorded nothing, the catalog read decides."""
    request, booking = new.request, new.booking
    if request.event_id is None or not request.seat_ids:
        return None
    remembered = ctx.seat_sales.priced(ctx.autocommit, request.event_id, request.seat_ids, new.now)
    if remembered is None:
        return None
    items = [
        BookingItem(booking_id=booking.id, event_id=request.event_id, seat_id=seat.id, price=price)
        for seat, price in zip(remembered.seats, remembered.prices, strict=True)
    ]
    booking.currency = remembered.currency
    rows, reply = _rows_and_reply(new, items, remembered.seats, remembered.event)
    written = insert_booking_request_as_priced(
        ctx.group_commit, rows, new.idempotent.answer_row(reply), remembered.priced_from
    )
    if written is None:  # the catalog changed since it was remembered
        ctx.seat_sales.forget(request.event_id)
        return None
    if not written:
        raise KeyTaken
    return reply


def _record_as_read(ctx: Context, new: _NewRequest) -> Reply:
    """The booking priced from the catalog read in this request, or refused by its rules."""
    # No unit of work: Core statements, each its own transaction.
    with ctx.autocommit() as connection:
        items, seats, booked = _priced_items(connection, new.booking, new.request, new.now)
        rows, reply = _rows_and_reply(new, items, seats, booked)
        if not insert_booking_request(connection, rows, new.idempotent.answer_row(reply)):
            raise KeyTaken
    return reply


def _rows_and_reply(
    new: _NewRequest, items: list[BookingItem], seats: Sequence[SeatLabel], booked: EventLabel | ResourceLabel,
) -> tuple[NewBookingRows, Reply]:
    """Every row of the request, and the answer: everything it shows is known before it is
    written, so nothing is read back."""
    booking, now = new.booking, new.now
    booking.total_amount = sum(item.price for item in items)
    rows = NewBookingRows(
        booking, items,
        Payment(booking_id=booking.id, provider="stripe", status=PaymentStatus.NONE.value, attempt=1,
                updated_at=now, amount_authorized=0, amount_captured=0, amount_refunded=0),
        BookingTransition(booking_id=booking.id, to_status=booking.status, at=now),
        new.message,
    )
    view = BookingView(booking, items, rows.payment, [rows.transition], {seat.id: seat for seat in seats}, booked)
    return rows, new.represent(view)


def _new_booking(client_id: uuid.UUID, request: NewBooking, *, now: datetime, request_id: str | None) -> Booking:
    return Booking(
        id=uuid.uuid4(), client_id=client_id, status=BookingStatus.REQUESTED.value,
        event_id=request.event_id, resource_id=request.resource_id,
        payment_mode=request.payment_mode.value, capture_mode=request.capture_mode.value,
        payment_method=request.payment_method, customer_email=request.customer_email,
        customer_name=request.customer_name, request_id=request_id, created_at=now, updated_at=now,
        expires_at=None, reason=None,
    )


Priced = tuple[list[BookingItem], list[SeatLabel], EventLabel | ResourceLabel]


def _priced_items(connection: Connection, booking: Booking, request: NewBooking, now: datetime) -> Priced:
    """The booking's items at today's prices, once the catalog's rules allow the booking now."""
    if request.event_id is not None and request.quantity is not None:
        return _place_items(connection, booking, request.event_id, request.quantity, now)
    if request.event_id is not None:
        return _seat_items(connection, booking, request.event_id, request.seat_ids, now)
    assert request.resource_id and request.starts_at and request.ends_at
    resource = resources.resource_for_sale(connection, request.resource_id)
    if resource is None:
        raise InvalidRequest("no such resource", details=[{"field": "resource_id", "code": "unknown"}])
    refusal = slot_refusal(resource.schedule, Interval(request.starts_at, request.ends_at), now)
    if refusal is not None:
        raise SaleRuleBroken(refusal.value, SLOT_REFUSALS[refusal])
    booking.currency = resource.currency
    price = pricing.slot_price(resource.rate_per_minute, request.starts_at, request.ends_at)
    period = catalog.slot_range(request.starts_at, request.ends_at)
    label = ResourceLabel(resource.id, resource.name, resource.schedule.timezone)
    return [BookingItem(booking_id=booking.id, resource_id=resource.id, period=period, price=price)], [], label


SLOT_REFUSALS = {
    SlotRefusal.TOO_SOON: "the slot starts in the past or inside the resource's minimum notice",
    SlotRefusal.TOO_FAR_AHEAD: "the slot ends beyond how far ahead the resource can be booked",
    SlotRefusal.OFF_GRANULARITY: "the slot does not start and end on the resource's slot granularity",
    SlotRefusal.OUTSIDE_AVAILABILITY: "the slot is not inside the resource's hours",
    SlotRefusal.UNAVAILABLE: "the slot is taken",
}


def _ensure_on_sale(window: SaleWindow, now: datetime) -> None:
    if sales_refusal(window, now) is not None:
        raise SaleRuleBroken(SALES_CLOSED, "the event is not on sale (outside its sale window, or it has started)")


def _place_items(connection: Connection, booking: Booking, event_id: uuid.UUID, quantity: int, now: datetime) -> Priced:
    event = catalog.event_for_sale(connection, event_id)
    if event is None:
        raise InvalidRequest("no such event", details=[{"field": "event_id", "code": "unknown"}])
    if event.capacity is None or event.general_price is None:
        raise InvalidRequest("this event is seated: give seat_ids", details=[{"field": "quantity", "code": "seated_event"}])
    _ensure_on_sale(event.window, now)
    booking.currency = event.currency
    item = BookingItem(booking_id=booking.id, event_id=event_id, quantity=quantity, price=event.general_price * quantity)
    return [item], [], event.label


def _seat_items(
    connection: Connection, booking: Booking, event_id: uuid.UUID, seat_ids: Sequence[uuid.UUID], now: datetime
) -> Priced:
    priced = catalog.priced_seats(connection, event_id, seat_ids)
    if not priced and catalog.event_for_sale(connection, event_id) is None:
        raise InvalidRequest("no such event", details=[{"field": "event_id", "code": "unknown"}])
    unknown = sorted(str(s) for s in set(seat_ids) - {p.seat.id for p in priced})
    if unknown:
        raise InvalidRequest(
            "some seats do not exist at this event's venue",
            details=[{"field": "seat_ids", "code": "not_at_event", "seat_ids": unknown}],
        )
    _ensure_on_sale(priced[0].window, now)
    tier_prices = {p.seat.tier: p.price for p in priced if p.price is not None}
    prices = pricing.seat_prices([p.seat.tier for p in priced], tier_prices)
    booking.currency = priced[0].currency
    items = [
        BookingItem(booking_id=booking.id, event_id=event_id, seat_id=p.seat.id, price=price)
        for p, price in zip(priced, prices, strict=True)
    ]
    return items, [p.seat for p in priced], priced[0].event


#: A repeated confirm of a booking whose capture was accepted is answered, not refused.
CONFIRMING = frozenset({BookingStatus.AUTHORIZED, BookingStatus.CONFIRMED})


def _own_booking(uow: UnitOfWork, client_id: uuid.UUID | None, booking_id: uuid.UUID) -> LockedBooking:
    """The booking, locked; a client's own only (`client_id` None: an operator, any client's)."""
    locked = uow.lock(booking_id)
    if locked is None or client_id not in (None, locked.booking.client_id):
        raise NotFound("no such booking")
    return locked


def request_confirm(
    uow: UnitOfWork, client_id: uuid.UUID, booking_id: uuid.UUID, *, now: datetime, request_id: str | None
) -> tuple[BookingView, list[StagedMessage]]:
    locked = _own_booking(uow, client_id, booking_id)
    booking = locked.booking
    already_accepted = booking.confirm_requested_at is not None and locked.status in CONFIRMING
    if not already_accepted:
        lifecycle.ensure_confirmable(locked.status, booking.expires_at, now)
        booking.confirm_requested_at = now
    message = stage(uow.session, *queues.CONFIRM_BOOKING, str(booking.id), request_id=request_id)
    return view_of(uow.session, booking, locked.payment), [message]


def request_cancel(
    uow: UnitOfWork, client_id: uuid.UUID | None, booking_id: uuid.UUID, *, now: datetime,
    request_id: str | None, refund_policy: RefundPolicy, refund: RefundChoice | None = None,
) -> tuple[BookingView, list[StagedMessage]]:
    """A client's cancel (`client_id`: refund per policy) or an operator's (None: the refund they
    choose, in full by default). The first accepted cancel decides; a repeat is answered.

    A confirmed booking's refund total is fixed here, when the cancel is asked for: the workers
    refund up to it, and the booking ends once Stripe has refunded that much."""
    locked = _own_booking(uow, client_id, booking_id)
    lifecycle.ensure_cancellable(locked.status)
    by_operator = client_id is None
    choice = refund or (RefundChoice.FULL if by_operator else RefundChoice.POLICY)
    reason = "cancelled_by_operator" if by_operator else "cancelled_by_client"
    message = accept_cancel(uow, locked, choice, reason, now=now, refund_policy=refund_policy, request_id=request_id)
    return view_of(uow.session, locked.booking, locked.payment), [message]


def accept_cancel(
    uow: UnitOfWork, locked: LockedBooking, choice: RefundChoice, reason: str, *, now: datetime,
    refund_policy: RefundPolicy, request_id: str | None,
) -> StagedMessage:
    """Record a cancel of a booking that is not final (the first accepted cancel decides) and
    stage the message that carries it out."""
    booking, payment = locked.booking, locked.payment
    if booking.cancel_requested_at is None:
        booking.cancel_requested_at, booking.cancel_refund, booking.cancel_reason = now, choice.value, reason
        if locked.status is BookingStatus.CONFIRMED:
            due = cancel_refund_total(
                choice, payment.amount_captured, refund_policy, starts_at_of(uow.session, booking), now
            )
            payment.refund_requested, payment.updated_at = max(payment.refund_requested, due), now
    return stage(uow.session, *queues.CANCEL_BOOKING, str(booking.id), request_id=request_id)


def request_refund(
    uow: UnitOfWork, booking_id: uuid.UUID, amount: int, *, now: datetime, request_id: str | None,
) -> tuple[BookingView, list[StagedMessage]]:
    """An operator's partial refund of a confirmed booking: the refund total asked for grows by
    `amount`, which may not take it past what was captured; the booking stays confirmed until
    everything captured is refunded."""
    locked = _own_booking(uow, None, booking_id)
    booking, payment = locked.booking, locked.payment
    if locked.status is not BookingStatus.CONFIRMED or booking.cancel_requested_at is not None:
        raise InvalidState(
            f"only a confirmed booking can be refunded; this one is {locked.status}",
            details={"status": str(locked.status)},
        )
    dispute = (payment.dispute or {}).get("status")
    if dispute_blocks_refunds(dispute):
        raise InvalidState(
            "the charge is disputed: the dispute decides where the money goes, and Stripe refuses refunds",
            details={"dispute": dispute},
        )
    target = max(payment.refund_requested, payment.amount_refunded) + amount
    if target > payment.amount_captured:
        raise RefundExceedsCaptured(
            "the refund would exceed what was captured",
            details={"refundable": payment.amount_captured - max(payment.refund_requested, payment.amount_refunded)},
        )
    payment.refund_requested, payment.updated_at = target, now
    message = stage(uow.session, *queues.REFUND_BOOKING, str(booking_id), request_id=request_id)
    return view_of(uow.session, booking, payment), [message]


def request_payment_retry(
    uow: UnitOfWork, client_id: uuid.UUID, booking_id: uuid.UUID, payment_method: str,
    *, now: datetime, request_id: str | None,
) -> tuple[BookingView, list[StagedMessage]]:
    """A new payment method for a booking awaiting payment: the next attempt uses a new key.

    One attempt at a time: while an accepted one has not been made, another is refused."""
    locked = _own_booking(uow, client_id, booking_id)
    booking, payment = locked.booking, locked.payment
    lifecycle.ensure_payment_retryable(locked.status)
    if booking.payment_mode == PaymentMode.CHECKOUT:
        # Its hosted page may still be paid; a second way to pay could take the money twice.
        raise InvalidState("a checkout booking is paid on its checkout page", details={"mode": "checkout"})
    ensure_new_attempt_allowed(
        PaymentStatus(payment.status), step_pending=payment.step is not None,
        has_payment_method=booking.payment_method is not None,
    )
    booking.payment_mode, booking.payment_method = PaymentMode.CARD.value, payment_method
    booking.updated_at = now
    payment.attempt += 1
    payment.status, payment.decline_code, payment.updated_at = PaymentStatus.NONE.value, None, now
    message = stage(uow.session, *queues.RETRY_PAYMENT, str(booking.id), request_id=request_id)
    return view_of(uow.session, booking, payment), [message]
