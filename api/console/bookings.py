"""Booking lookup, one booking's timeline, and the operator's cancel and refund as forms."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import falcon

from api.console.base import ConsolePage
from api.console.rendering import check_form_token, render
from api.errors import APIError
from db.queries.bookings import BookingView
from db.queries.timeline import BookingTimeline, booking_timeline, find_bookings
from db.unit_of_work import UnitOfWork
from domain.errors import DomainError, NotFound
from domain.payments import RefundChoice
from services import requests
from services.idempotency import IdempotentRequest, Outcome, Reply, execute_once, fingerprint
from services.outbox import StagedMessage


class BookingLookup(ConsolePage):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = req.get_param("q") or ""
        with self.ctx.sessions() as session:
            found = find_bookings(session, q)
        if q and len(found) == 1 and "@" not in q:
            raise falcon.HTTPSeeOther(f"/ops/bookings/{found[0].id}")
        render(req, resp, "bookings.html", at=self.ctx.clock(), q=q, bookings=found)


class BookingLookupJson(ConsolePage):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        with self.ctx.sessions() as session:
            resp.media = {"items": find_bookings(session, req.get_param("q") or "")}


class BookingStory(ConsolePage):
    def timeline(self, booking_id: uuid.UUID) -> BookingTimeline:
        with self.ctx.sessions() as session:
            found = booking_timeline(session, booking_id)
        if found is None:
            raise NotFound("no such booking")
        return found

    def on_get(self, req: falcon.Request, resp: falcon.Response, booking_id: uuid.UUID) -> None:
        render(req, resp, "booking.html", at=self.ctx.clock(), story=self.timeline(booking_id),
               form_key=uuid.uuid4().hex, done=req.get_param("done"), failed=req.get_param("failed"),
               refund_choices=[choice.value for choice in RefundChoice])


class BookingStoryJson(BookingStory):
    def on_get(self, req: falcon.Request, resp: falcon.Response, booking_id: uuid.UUID) -> None:
        resp.media = self.timeline(booking_id)


class BookingAction(ConsolePage):
    """POST /ops/bookings/{id}/{action}: the operator's cancel (with the refund they choose) or
    partial refund, through the same services as the JSON routes. The form carries its own
    idempotency key, so a double submit is answered once."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, booking_id: uuid.UUID, action: str) -> None:
        form = req.get_media(default_when_empty={})
        if not check_form_token(req, form):
            raise APIError(falcon.HTTP_403, "forbidden", "the form token does not match")
        body = {k: form.get(k) for k in ("refund", "amount") if form.get(k)}
        key = IdempotentRequest(req.context.principal.client_id, f"console-{form.get('key') or uuid.uuid4().hex}",
                                fingerprint(req.method, req.path, body))
        try:
            execute_once(self.ctx, key, self._command(req, booking_id, action, form))
        except DomainError as error:
            raise falcon.HTTPSeeOther(f"/ops/bookings/{booking_id}?failed={quote(str(error))}") from error
        raise falcon.HTTPSeeOther(f"/ops/bookings/{booking_id}?done={action}")

    def _command(
        self, req: falcon.Request, booking_id: uuid.UUID, action: str, form: dict[str, Any]
    ) -> Callable[[UnitOfWork], Outcome]:
        now, request_id = self.ctx.clock(), req.context.request_id
        if action == "cancel":
            refund = _refund_choice(form.get("refund"))

            def run(uow: UnitOfWork) -> tuple[BookingView, list[StagedMessage]]:
                return requests.request_cancel(uow, None, booking_id, now=now, request_id=request_id,
                                               refund_policy=self.ctx.settings.refund_policy, refund=refund)
        elif action == "refund":
            amount = _cents(form.get("amount"))

            def run(uow: UnitOfWork) -> tuple[BookingView, list[StagedMessage]]:
                return requests.request_refund(uow, booking_id, amount, now=now, request_id=request_id)
        else:
            raise APIError(falcon.HTTP_404, "not_found", "no such action")

        def answered(uow: UnitOfWork) -> Outcome:
            view, messages = run(uow)
            return Outcome(Reply(202, {"id": str(view.booking.id)}), messages)

        return answered


def _refund_choice(value: Any) -> RefundChoice:
    try:
        return RefundChoice(value or RefundChoice.FULL.value)
    except ValueError:
        raise APIError(falcon.HTTP_422, "validation_error", "refund is policy, full or none") from None


def _cents(value: Any) -> int:
    try:
        amount = int(str(value))
    except ValueError:
        raise APIError(falcon.HTTP_422, "validation_error", "amount is a whole number of cents") from None
    if amount <= 0:
        raise APIError(falcon.HTTP_422, "validation_error", "amount must be positive")
    return amount
