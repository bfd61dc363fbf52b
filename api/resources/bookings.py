"""/v1/bookings: submit, read, list, confirm, cancel, retry a payment; operators also refund."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import falcon

from api.errors import APIError
from api.media import parse_body, parse_query, read_json
from api.representations import booking_body, decode_cursor, encode_cursor
from api.schemas import (
    BookingCreate,
    BookingListQuery,
    NoQuery,
    OperatorCancel,
    OperatorRefund,
    PaymentRetry,
)
from db.archive import archived_view
from db.queries.bookings import BookingSearch, BookingView, list_bookings, view_booking
from db.unit_of_work import UnitOfWork
from domain.errors import NotFound
from domain.lifecycle import SETTLED, BookingStatus
from domain.payments import CaptureMode, PaymentMode, RefundChoice
from services import requests
from services.context import Context
from services.idempotency import IdempotentRequest, Outcome, Reply, execute_once, fingerprint
from services.outbox import StagedMessage

Command = Callable[[UnitOfWork], tuple[BookingView, list[StagedMessage]]]


def idempotency_key(req: falcon.Request) -> str:
    key = (req.get_header("Idempotency-Key") or "").strip()
    if not key:
        raise APIError(falcon.HTTP_400, "idempotency_key_required", "send an Idempotency-Key header")
    if len(key) > 255 or not key.isprintable() or not key.isascii():
        raise APIError(
            falcon.HTTP_400, "idempotency_key_invalid",
            "Idempotency-Key must be at most 255 printable ASCII characters",
        )
    return key


def respond(resp: falcon.Response, reply: Reply) -> None:
    resp.status = falcon.code_to_http_status(reply.status)
    resp.media = reply.body
    if reply.location:
        resp.location = reply.location
    if reply.replayed:
        resp.set_header("Idempotent-Replayed", "true")


def idempotent_request(req: falcon.Request, body: Any) -> IdempotentRequest:
    return IdempotentRequest(
        req.context.principal.client_id, idempotency_key(req), fingerprint(req.method, req.path, body)
    )


def readable_by(req: falcon.Request) -> uuid.UUID | None:
    """Whose bookings the caller may read and act on: a client its own, an operator any (None)."""
    principal = req.context.principal
    return None if principal.is_operator else principal.client_id


def accepted(view: BookingView) -> Reply:
    return Reply(202, booking_body(view), f"/v1/bookings/{view.booking.id}")


def run_once(ctx: Context, req: falcon.Request, body: Any, command: Command) -> Reply:
    """Run a booking command under the request's idempotency key; answer 202 with the booking."""

    def answered(uow: UnitOfWork) -> Outcome:
        view, messages = command(uow)
        return Outcome(accepted(view), messages)

    return execute_once(ctx, idempotent_request(req, body), answered)


def new_booking(request: BookingCreate) -> requests.NewBooking:
    return requests.NewBooking(
        customer_email=str(request.customer.email), customer_name=request.customer.name,
        payment_mode=PaymentMode(request.payment.mode), capture_mode=CaptureMode(request.payment.capture),
        payment_method=request.payment.payment_method, event_id=request.event_id,
        seat_ids=request.seat_ids or (), quantity=request.quantity, resource_id=request.resource_id,
        starts_at=request.starts_at, ends_at=request.ends_at,
    )


class Bookings:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        idempotency_key(req)
        body = read_json(req, self.ctx.settings.max_body_bytes)
        request = new_booking(parse_body(BookingCreate, body))
        respond(resp, requests.submit_booking(
            self.ctx, idempotent_request(req, body), request, now=self.ctx.clock(),
            request_id=req.context.request_id, represent=accepted,
        ))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = parse_query(BookingListQuery, req)
        principal = req.context.principal
        if query.client_id is not None and not principal.is_operator and query.client_id != principal.client_id:
            raise APIError(falcon.HTTP_403, "forbidden", "only operators search other clients' bookings")
        search = BookingSearch(
            client_id=query.client_id if principal.is_operator else principal.client_id,
            status=query.status, email=query.email, event_id=query.event_id, resource_id=query.resource_id,
        )
        after = decode_cursor(query.cursor) if query.cursor else None
        with self.ctx.sessions() as session:
            views = list_bookings(session, search, limit=query.limit + 1, after=after)
        page, more = views[: query.limit], len(views) > query.limit
        last = page[-1].booking if more else None
        resp.media = {
            "items": [booking_body(view) for view in page],
            "next_cursor": encode_cursor(last.created_at, last.id) if last else None,
        }


class Booking:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, booking_id: uuid.UUID) -> None:
        parse_query(NoQuery, req)
        client_id = readable_by(req)
        with self.ctx.sessions() as session:
            view = view_booking(session, booking_id, client_id) or archived_view(session, booking_id, client_id)
        if view is None:
            raise NotFound("no such booking")
        resp.media = booking_body(view)
        if BookingStatus(view.booking.status) not in SETTLED:
            resp.set_header("Retry-After", "1")


class BookingConfirmation:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, booking_id: uuid.UUID) -> None:
        client_id, now = req.context.principal.client_id, self.ctx.clock()
        respond(resp, run_once(self.ctx, req, None, lambda uow: requests.request_confirm(
            uow, client_id, booking_id, now=now, request_id=req.context.request_id,
        )))


class BookingCancellation:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, booking_id: uuid.UUID) -> None:
        """A client's cancel (refund per policy), or an operator's with the refund they choose."""
        body, refund = None, None
        if req.context.principal.is_operator and (req.content_length or 0) > 0:
            body = read_json(req, self.ctx.settings.max_body_bytes)
            refund = RefundChoice(parse_body(OperatorCancel, body).refund)
        client_id, now = readable_by(req), self.ctx.clock()
        respond(resp, run_once(self.ctx, req, body, lambda uow: requests.request_cancel(
            uow, client_id, booking_id, now=now, request_id=req.context.request_id,
            refund_policy=self.ctx.settings.refund_policy, refund=refund,
        )))


class BookingRefund:
    auth = "operator"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, booking_id: uuid.UUID) -> None:
        idempotency_key(req)
        body = read_json(req, self.ctx.settings.max_body_bytes)
        amount, now = parse_body(OperatorRefund, body).amount, self.ctx.clock()
        respond(resp, run_once(self.ctx, req, body, lambda uow: requests.request_refund(
            uow, booking_id, amount, now=now, request_id=req.context.request_id,
        )))


class BookingPayment:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, booking_id: uuid.UUID) -> None:
        idempotency_key(req)
        body = read_json(req, self.ctx.settings.max_body_bytes)
        retry = parse_body(PaymentRetry, body)
        client_id, now = req.context.principal.client_id, self.ctx.clock()
        respond(resp, run_once(self.ctx, req, body, lambda uow: requests.request_payment_retry(
            uow, client_id, booking_id, retry.payment_method, now=now, request_id=req.context.request_id,
        )))
