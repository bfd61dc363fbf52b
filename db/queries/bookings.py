"""Reading and writing bookings, their items, payments and history."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Select, and_, bindparam, func, or_, select, text
from sqlalchemy.dialects.postgresql import JSONB, TSTZRANGE, Range
from sqlalchemy.orm import Session

from db.driver import DriverStatement
from db.group_commit import GroupCommit
from db.models import Booking, BookingItem, BookingTransition, Event, OutboxMessage, Payment, Seat
from db.queries.catalog import (
    EventLabel,
    ResourceLabel,
    SeatLabel,
    interval_of,
    label_of,
    sale_window,
)
from domain.sales import SaleWindow


@dataclass(frozen=True)
class NewBookingRows:
    """Every row a booking request records, built in memory before one statement writes them."""

    booking: Booking
    items: Sequence[BookingItem]
    payment: Payment
    transition: BookingTransition
    message: OutboxMessage


def _insert_request(check: str = "", condition: str = "true") -> DriverStatement:
    """The statement that records a booking request; `check` (a CTE) and `condition` make every
    part of it, the key's claim first, depend on something read in the same statement."""
    return DriverStatement(text(f"""
WITH {check}claimed_key AS (
    INSERT INTO idempotency_keys (client_id, key, fingerprint, response_status, response_body,
                                  response_location)
    SELECT :key_client_id, :key_key, :key_fingerprint, :key_status, :key_body, :key_location
    WHERE {condition}
    ON CONFLICT DO NOTHING
    RETURNING 1
), new_booking AS (
    INSERT INTO bookings (id, client_id, status, event_id, resource_id, total_amount, currency,
                          payment_mode, capture_mode, payment_method, customer_email, customer_name,
                          request_id, created_at, updated_at)
    SELECT :id, :client_id, :status, :event_id, :resource_id, :total_amount, :currency,
           :payment_mode, :capture_mode, :payment_method, :customer_email, :customer_name,
           :request_id, :created_at, :updated_at
    FROM claimed_key
), new_items AS (
    INSERT INTO booking_items (booking_id, event_id, seat_id, resource_id, period, price, quantity, holds_inventory)
    SELECT :id, :event_id, item.seat_id, :resource_id, :period, item.price, item.quantity, false
    FROM claimed_key, unnest(CAST(:seat_ids AS uuid[]), CAST(:prices AS integer[]), CAST(:quantities AS integer[]))
        AS item(seat_id, price, quantity)
), new_payment AS (
    INSERT INTO payments (booking_id, provider, status, amount_authorized, amount_captured,
                          amount_refunded, attempt, updated_at)
    SELECT :id, :p_provider, :p_status, :p_amount_authorized, :p_amount_captured, :p_amount_refunded,
           :p_attempt, :p_updated_at
    FROM claimed_key
), new_transition AS (
    INSERT INTO booking_transitions (booking_id, to_status, at) SELECT :id, :t_to_status, :t_at FROM claimed_key
), new_message AS (
    INSERT INTO outbox (id, queue_name, actor_name, args, options, created_at, relay_count)
    SELECT :m_id, :m_queue_name, :m_actor_name, :m_args, :m_options, :created_at, 0
    FROM claimed_key
)
SELECT (SELECT count(*) FROM claimed_key), {condition}
""").bindparams(
        bindparam("period", type_=TSTZRANGE), bindparam("key_body", type_=JSONB),
        bindparam("m_args", type_=JSONB), bindparam("m_options", type_=JSONB),
    ))


_INSERT_REQUEST = _insert_request()

#: The same, for seats priced from what the process remembers of the catalog
#: (`services.seat_sales`): written only if the event, its venue, its prices and the seats
#: still say what the answer was built from, so a change since is never sold at the old terms.
_INSERT_REQUEST_AS_PRICED = _insert_request(
    check="""unchanged AS (
    SELECT count(*) = cardinality(CAST(:seat_ids AS uuid[])) AS holds
    FROM events AS e
    JOIN venues AS v ON v.id = e.venue_id
    CROSS JOIN unnest(CAST(:seat_ids AS uuid[]), CAST(:prices AS integer[]), CAST(:seat_rows AS text[]),
                      CAST(:seat_numbers AS integer[]), CAST(:seat_tiers AS text[]))
        AS seen(seat_id, price, row, number, tier)
    JOIN seats AS s ON s.id = seen.seat_id AND s.venue_id = e.venue_id AND s.row = seen.row
        AND s.number = seen.number AND s.tier = seen.tier AND s.retired_at IS NULL
    JOIN event_prices AS p ON p.event_id = e.id AND p.tier = seen.tier AND p.amount = seen.price
    WHERE e.id = :event_id AND e.venue_id = :e_venue_id AND e.currency = :currency AND e.name = :e_name
        AND e.starts_at = :e_starts_at AND e.ends_at = :e_ends_at AND e.sales_start_at = :e_sales_start_at
        AND e.sales_end_at = :e_sales_end_at AND e.status = :e_status AND v.name = :e_venue_name
), """,
    condition="(SELECT holds FROM unchanged)",
)


#: `_INSERT_REQUEST_AS_PRICED` for many requests at once: the same rows, checks and claims, per
#: request, from arrays with one element per request (and, for the seats, one per seat).
_INSERT_REQUESTS_AS_PRICED = DriverStatement(text("""
WITH request AS (
    SELECT * FROM unnest(
        CAST(:id AS uuid[]), CAST(:client_id AS uuid[]), CAST(:status AS text[]), CAST(:event_id AS uuid[]),
        CAST(:total_amount AS integer[]), CAST(:currency AS text[]), CAST(:payment_mode AS text[]),
        CAST(:capture_mode AS text[]), CAST(:payment_method AS text[]), CAST(:customer_email AS text[]),
        CAST(:customer_name AS text[]), CAST(:request_id AS text[]), CAST(:created_at AS timestamptz[]),
        CAST(:updated_at AS timestamptz[]), CAST(:seat_count AS integer[]),
        CAST(:key_client_id AS uuid[]), CAST(:key_key AS text[]), CAST(:key_fingerprint AS text[]),
        CAST(:key_status AS integer[]), CAST(CAST(:key_body AS text[]) AS jsonb[]), CAST(:key_location AS text[]),
        CAST(:p_provider AS text[]), CAST(:p_status AS text[]), CAST(:p_amount_authorized AS integer[]),
        CAST(:p_amount_captured AS integer[]), CAST(:p_amount_refunded AS integer[]), CAST(:p_attempt AS integer[]),
        CAST(:p_updated_at AS timestamptz[]), CAST(:t_to_status AS text[]), CAST(:t_at AS timestamptz[]),
        CAST(:m_id AS uuid[]), CAST(:m_queue_name AS text[]), CAST(:m_actor_name AS text[]),
        CAST(CAST(:m_args AS text[]) AS jsonb[]), CAST(CAST(:m_options AS text[]) AS jsonb[]),
        CAST(:e_venue_id AS uuid[]), CAST(:e_name AS text[]), CAST(:e_starts_at AS timestamptz[]),
        CAST(:e_ends_at AS timestamptz[]), CAST(:e_sales_start_at AS timestamptz[]),
        CAST(:e_sales_end_at AS timestamptz[]), CAST(:e_status AS text[]), CAST(:e_venue_name AS text[])
    ) AS r(id, client_id, status, event_id, total_amount, currency, payment_mode, capture_mode, payment_method,
           customer_email, customer_name, request_id, created_at, updated_at, seat_count,
           key_client_id, key_key, key_fingerprint, key_status, key_body, key_location,
           p_provider, p_status, p_amount_authorized, p_amount_captured, p_amount_refunded, p_attempt, p_updated_at,
           t_to_status, t_at, m_id, m_queue_name, m_actor_name, m_args, m_options,
           e_venue_id, e_name, e_starts_at, e_ends_at, e_sales_start_at, e_sales_end_at, e_status, e_venue_name)
), item AS (
    SELECT * FROM unnest(
        CAST(:i_booking_id AS uuid[]), CAST(:i_seat_id AS uuid[]), CAST(:i_price AS integer[]),
        CAST(:i_row AS text[]), CAST(:i_number AS integer[]), CAST(:i_tier AS text[])
    ) AS i(booking_id, seat_id, price, row, number, tier)
), unchanged AS (
    SELECT r.id
    FROM request AS r
    JOIN events AS e ON e.id = r.event_id AND e.venue_id = r.e_venue_id AND e.currency = r.currency
        AND e.name = r.e_name AND e.starts_at = r.e_starts_at AND e.ends_at = r.e_ends_at
        AND e.sales_start_at = r.e_sales_start_at AND e.sales_end_at = r.e_sales_end_at AND e.status = r.e_status
    JOIN venues AS v ON v.id = e.venue_id AND v.name = r.e_venue_name
    JOIN item AS i ON i.booking_id = r.id
    JOIN seats AS s ON s.id = i.seat_id AND s.venue_id = e.venue_id AND s.row = i.row
        AND s.number = i.number AND s.tier = i.tier AND s.retired_at IS NULL
    JOIN event_prices AS p ON p.event_id = e.id AND p.tier = i.tier AND p.amount = i.price
    GROUP BY r.id, r.seat_count
    HAVING count(*) = r.seat_count
), claimed_key AS (
    INSERT INTO idempotency_keys (client_id, key, fingerprint, response_status, response_body,
                                  response_location)
    SELECT r.key_client_id, r.key_key, r.key_fingerprint, r.key_status, r.key_body, r.key_location
    FROM request AS r JOIN unchanged USING (id)
    ORDER BY r.key_client_id, r.key_key
    ON CONFLICT DO NOTHING
    RETURNING client_id, key
), claimed AS (
    SELECT r.* FROM request AS r JOIN claimed_key AS k ON k.client_id = r.key_client_id AND k.key = r.key_key
), new_booking AS (
    INSERT INTO bookings (id, client_id, status, event_id, resource_id, total_amount, currency,
                          payment_mode, capture_mode, payment_method, customer_email, customer_name,
                          request_id, created_at, updated_at)
    SELECT id, client_id, status, event_id, NULL, total_amount, currency, payment_mode, capture_mode,
           payment_method, customer_email, customer_name, request_id, created_at, updated_at
    FROM claimed
), new_items AS (
    INSERT INTO booking_items (booking_id, event_id, seat_id, resource_id, period, price, quantity, holds_inventory)
    SELECT c.id, c.event_id, i.seat_id, NULL, NULL, i.price, 1, false
    FROM claimed AS c JOIN item AS i ON i.booking_id = c.id
), new_payment AS (
    INSERT INTO payments (booking_id, provider, status, amount_authorized, amount_captured,
                          amount_refunded, attempt, updated_at)
    SELECT id, p_provider, p_status, p_amount_authorized, p_amount_captured, p_amount_refunded, p_attempt,
           p_updated_at
    FROM claimed
), new_transition AS (
    INSERT INTO booking_transitions (booking_id, to_status, at) SELECT id, t_to_status, t_at FROM claimed
), new_message AS (
    INSERT INTO outbox (id, queue_name, actor_name, args, options, created_at, relay_count)
    SELECT m_id, m_queue_name, m_actor_name, m_args, m_options, created_at, 0
    FROM claimed
)
SELECT r.id, k.key IS NOT NULL, u.id IS NOT NULL
FROM request AS r
LEFT JOIN unchanged AS u ON u.id = r.id
LEFT JOIN claimed_key AS k ON k.client_id = r.key_client_id AND k.key = r.key_key
"""))

#: The columns of `_INSERT_REQUESTS_AS_PRICED`'s requests, as named in one request's parameters.
_REQUEST_COLUMNS = (
    "id", "client_id", "status", "event_id", "total_amount", "currency", "payment_mode", "capture_mode",
    "payment_method", "customer_email", "customer_name", "request_id", "created_at", "updated_at",
    "key_client_id", "key_key", "key_fingerprint", "key_status", "key_location", "p_provider", "p_status",
    "p_amount_authorized", "p_amount_captured", "p_amount_refunded", "p_attempt", "p_updated_at",
    "t_to_status", "t_at", "m_id", "m_queue_name", "m_actor_name", "e_venue_id", "e_name", "e_starts_at",
    "e_ends_at", "e_sales_start_at", "e_sales_end_at", "e_status", "e_venue_name",
)
_JSON_COLUMNS = ("key_body", "m_args", "m_options")


class _PricedRequests:
    """Priced seat bookings, one (`_INSERT_REQUEST_AS_PRICED`) or many in one statement
    (`_INSERT_REQUESTS_AS_PRICED`): a `db.group_commit.BatchedStatement`. Each request's rows
    are its claim and check, `[(claimed, holds)]`, whichever way it was written."""

    def one(self, connection: Connection, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return _INSERT_REQUEST_AS_PRICED.rows(connection, parameters)

    def many(self, connection: Connection, batch: Sequence[Mapping[str, Any]]) -> list[list[tuple[Any, ...]]]:
        # A key asked for twice in one batch: the first in the statement, the others after it, in
        # the same transaction, where they find the key taken, as they would have after a commit.
        firsts: dict[tuple[uuid.UUID, str], int] = {}
        for position, parameters in enumerate(batch):
            firsts.setdefault((parameters["key_client_id"], parameters["key_key"]), position)
        together = [batch[position] for position in firsts.values()]
        found = {row[0]: row[1:] for row in _INSERT_REQUESTS_AS_PRICED.rows(connection, _as_columns(together))}
        return [
            [found[parameters["id"]]] if firsts[(parameters["key_client_id"], parameters["key_key"])] == position
            else self.one(connection, parameters)
            for position, parameters in enumerate(batch)
        ]


def _as_columns(batch: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """One request's parameters each, as the batch statement's arrays."""
    columns: dict[str, list[Any]] = {name: [p[name] for p in batch] for name in _REQUEST_COLUMNS}
    for name in _JSON_COLUMNS:
        columns[name] = [orjson.dumps(p[name]).decode() for p in batch]
    columns["seat_count"] = [len(p["seat_ids"]) for p in batch]
    columns["i_booking_id"] = [p["id"] for p in batch for _ in p["seat_ids"]]
    for name, key in (("i_seat_id", "seat_ids"), ("i_price", "prices"), ("i_row", "seat_rows"),
                      ("i_number", "seat_numbers"), ("i_tier", "seat_tiers")):
        columns[name] = [value for p in batch for value in p[key]]
    return columns


#: The accept path's priced inserts, batched by `db.group_commit.GroupCommit`.
PRICED_REQUESTS = _PricedRequests()


def insert_booking_request(connection: Connection, new: NewBookingRows, key_answer: dict[str, Any]) -> bool:
    """A new booking with its items, payment, first transition, outbox message and the answer to
    its idempotency key (`IdempotentRequest.answer_row`): one statement, atomic on its own
    (foreign keys are checked at its end).

    Nothing is written if the key is taken (False): every part is inserted from the key's
    claim, so a retry that lost the race leaves no trace.
    """
    [(claimed, _)] = _INSERT_REQUEST.rows(connection, _request_parameters(new, key_answer))
    return bool(claimed)


@dataclass(frozen=True)
class PricedFrom:
    """What a seat booking's prices and answer were built from: the event as the process last
    read it (`services.seat_sales`), and the seats' labels in the order of its items."""

    event_venue_id: uuid.UUID
    event_name: str
    starts_at: datetime
    ends_at: datetime
    sales_start_at: datetime
    sales_end_at: datetime
    status: str
    venue_name: str
    seats: Sequence[SeatLabel]


def insert_booking_request_as_priced(
    writes: GroupCommit, new: NewBookingRows, key_answer: dict[str, Any], priced_from: PricedFrom
) -> bool | None:
    """As `insert_booking_request`, for seats at an event, written only if the catalog still
    says what `priced_from` says (the event's terms and venue, each seat's label, each tier's
    price): None if it does not, and nothing was written. The check reads the rows the catalog
    read would have read, in the same statement: one round trip instead of two, and committed
    with the other requests' of the moment (`db.group_commit`), in the order of their keys."""
    [(claimed, holds)] = writes.rows(PRICED_REQUESTS, {
        **_request_parameters(new, key_answer),
        "seat_rows": [seat.row for seat in priced_from.seats],
        "seat_numbers": [seat.number for seat in priced_from.seats],
        "seat_tiers": [seat.tier for seat in priced_from.seats],
        "e_venue_id": priced_from.event_venue_id, "e_name": priced_from.event_name,
        "e_starts_at": priced_from.starts_at, "e_ends_at": priced_from.ends_at,
        "e_sales_start_at": priced_from.sales_start_at, "e_sales_end_at": priced_from.sales_end_at,
        "e_status": priced_from.status, "e_venue_name": priced_from.venue_name,
    })
    if not holds:
        return None
    return bool(claimed)


def _request_parameters(new: NewBookingRows, key_answer: dict[str, Any]) -> dict[str, Any]:
    booking, payment, transition, message = new.booking, new.payment, new.transition, new.message
    return {
        **key_answer,
        "id": booking.id, "client_id": booking.client_id, "status": booking.status,
        "event_id": booking.event_id, "resource_id": booking.resource_id,
        "total_amount": booking.total_amount, "currency": booking.currency,
        "payment_mode": booking.payment_mode, "capture_mode": booking.capture_mode,
        "payment_method": booking.payment_method, "customer_email": booking.customer_email,
        "customer_name": booking.customer_name, "request_id": booking.request_id,
        "created_at": booking.created_at, "updated_at": booking.updated_at,
        "seat_ids": [item.seat_id for item in new.items], "prices": [item.price for item in new.items],
        "quantities": [item.quantity or 1 for item in new.items],
        "period": new.items[0].period if booking.resource_id is not None else None,
        "p_provider": payment.provider, "p_status": payment.status,
        "p_amount_authorized": payment.amount_authorized, "p_amount_captured": payment.amount_captured,
        "p_amount_refunded": payment.amount_refunded, "p_attempt": payment.attempt,
        "p_updated_at": payment.updated_at, "t_to_status": transition.to_status, "t_at": transition.at,
        "m_id": message.id, "m_queue_name": message.queue_name, "m_actor_name": message.actor_name,
        "m_args": message.args, "m_options": message.options,
    }


_ITEMS_OF = select(BookingItem).where(BookingItem.booking_id == bindparam("booking_id")).order_by(BookingItem.id)


@dataclass(frozen=True)
class RequestedItem:
    """What a placement reads of a booking's item: what it claims, and the sale window of its event."""

    event_id: uuid.UUID | None
    seat_id: uuid.UUID | None
    resource_id: uuid.UUID | None
    period: Range[datetime] | None
    quantity: int
    window: SaleWindow | None  # None: a resource's time slot


_item, _event = BookingItem.__table__.c, Event.__table__.c
_REQUESTED_ITEMS = DriverStatement(
    select(_item.event_id, _item.seat_id, _item.resource_id, _item.period, _item.quantity,
           _event.sales_start_at, _event.sales_end_at, _event.starts_at, _event.status)
    .outerjoin(Event.__table__, _event.id == _item.event_id)
    .where(_item.booking_id == bindparam("booking_id"))
    .order_by(_item.id)
)


def requested_items(connection: Connection, booking_id: uuid.UUID) -> list[RequestedItem]:
    """A booking's items with their event's sale window, in one statement (a placement's first read)."""
    return [
        RequestedItem(event_id, seat_id, resource_id, period, quantity,
                      sale_window(opens, closes, starts_at, status) if opens is not None else None)
        for event_id, seat_id, resource_id, period, quantity, opens, closes, starts_at, status
        in _REQUESTED_ITEMS.rows(connection, {"booking_id": booking_id})
    ]
def items_of(session: Session, booking_id: uuid.UUID) -> Sequence[BookingItem]:
    return session.scalars(_ITEMS_OF, {"booking_id": booking_id}).all()


def starts_at_of(session: Session, booking: Booking) -> datetime:
    """When the booked event or time slot begins (what the refund policy counts back from)."""
    if booking.event_id is not None:
        return session.scalars(select(Event.starts_at).where(Event.id == booking.event_id)).one()
    (item,) = items_of(session, booking.id)
    return interval_of(item.period).starts_at


@dataclass(frozen=True)
class BookingView:
    booking: Booking
    items: Sequence[BookingItem]
    payment: Payment
    history: Sequence[BookingTransition]
    seats: Mapping[uuid.UUID, Seat | SeatLabel]
    #: The event or resource, as the answer names it.
    booked: EventLabel | ResourceLabel | None = None


def view_booking(session: Session, booking_id: uuid.UUID, client_id: uuid.UUID | None) -> BookingView | None:
    """A booking with everything its representation shows: a client's own only (None: any)."""
    query = select(Booking).where(Booking.id == booking_id)
    if client_id is not None:
        query = query.where(Booking.client_id == client_id)
    booking = session.scalars(query).one_or_none()
    if booking is None:
        return None
    return _view(session, booking)


def _view(session: Session, booking: Booking) -> BookingView:
    return view_of(session, booking, session.get_one(Payment, booking.id))


def view_of(session: Session, booking: Booking, payment: Payment) -> BookingView:
    """The representation's data for a booking and payment the caller holds (a locked booking's
    own rows are not read back: the caller's copies are the truth until commit)."""
    history = session.scalars(
        select(BookingTransition)
        .where(BookingTransition.booking_id == booking.id)
        .order_by(BookingTransition.at, BookingTransition.id)
    ).all()
    items = items_of(session, booking.id)
    seat_ids = [item.seat_id for item in items if item.seat_id is not None]
    seats = (
        {seat.id: seat for seat in session.scalars(select(Seat).where(Seat.id.in_(seat_ids)))}
        if seat_ids else {}
    )
    return BookingView(booking, items, payment, history, seats, label_of(session, booking.event_id, booking.resource_id))


@dataclass(frozen=True)
class BookingSearch:
    """Which bookings a list shows; `client_id` None only for operators (every client's)."""

    client_id: uuid.UUID | None
    status: str | None = None
    email: str | None = None
    event_id: uuid.UUID | None = None
    resource_id: uuid.UUID | None = None


def list_bookings(
    session: Session, search: BookingSearch, *, limit: int, after: tuple[datetime, uuid.UUID] | None,
) -> list[BookingView]:
    """Newest first; `after` is the (created_at, id) of the last booking of the previous page."""
    query = search_query(search, limit=limit, after=after)
    return [_view(session, booking) for booking in session.scalars(query).all()]


def search_query(
    search: BookingSearch, *, limit: int, after: tuple[datetime, uuid.UUID] | None = None,
) -> Select[Booking]:
    """Each filter has an index that keeps the newest-first order (bookings_by_client, _by_email,
    _by_event, _by_resource, _newest_first): a page reads its rows, not the table
    (`python -m bench.plans --search` shows the plans on a million bookings)."""
    query = select(Booking)
    for column, value in (
        (Booking.client_id, search.client_id), (Booking.status, search.status),
        (Booking.event_id, search.event_id), (Booking.resource_id, search.resource_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if search.email is not None:
        query = query.where(func.lower(Booking.customer_email) == search.email.strip().lower())
    if after is not None:
        created_at, last_id = after
        query = query.where(
            or_(
                Booking.created_at < created_at,
                and_(Booking.created_at == created_at, Booking.id < last_id),
            )
        )
    return query.order_by(Booking.created_at.desc(), Booking.id.desc()).limit(limit)


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Booking.status, func.count()).group_by(Booking.status)).all()
    return {status: count for status, count in rows}
