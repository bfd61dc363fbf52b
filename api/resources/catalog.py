"""Events with their seat maps: clients read them, operators create and change them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import falcon
from sqlalchemy.orm import Session

from api.catalog_schemas import PageQuery, SeatSelection
from api.media import parse_body, parse_query, read_json
from api.representations import (
    decode_keyset,
    encode_keyset,
    event_body,
    invalid_cursor,
)
from api.resources.bookings import idempotency_key, respond
from api.resources.operators import Answer, require_operator, write_once
from api.schemas import NoQuery
from db.queries import catalog
from db.unit_of_work import UnitOfWork
from domain.errors import NotFound
from services import catalog as operations
from services import event_cancellation
from services.catalog_documents import EventCreate, EventUpdate
from services.context import Context


def _event_answer(ctx: Context, uow: UnitOfWork, event_id: uuid.UUID, status: int) -> Answer:
    view = catalog.get_event(uow.session, event_id, now=ctx.clock())
    assert view is not None
    return status, _with_cancellation(ctx, uow.session, view), f"/v1/events/{event_id}", ()


def _with_cancellation(ctx: Context, session: Session, view: catalog.EventView) -> dict[str, Any]:
    """The event; a cancelled one with how far the cancellation of its bookings has got."""
    body = event_body(view, ctx.clock())
    if view.event.status == "cancelled":
        done = event_cancellation.progress(
            session, view.event.id, now=ctx.clock(), stuck_after=ctx.settings.reconcile_after.total_seconds()
        )
        body["cancellation"] = {"bookings": done.bookings, "done": done.done, "failed": done.failed}
    return body


class Events:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query, now = parse_query(PageQuery, req), self.ctx.clock()
        after = _event_key(query.cursor) if query.cursor else None
        with self.ctx.sessions() as session:
            views = catalog.list_events(session, now=now, limit=query.limit + 1, after=after)
        page = views[: query.limit]
        last = page[-1].event if len(views) > query.limit else None
        resp.media = {
            "items": [event_body(view, now) for view in page],
            "next_cursor": encode_keyset(last.starts_at.isoformat(), last.id) if last else None,
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_operator(req)
        idempotency_key(req)
        body = read_json(req, self.ctx.settings.max_body_bytes)
        spec = parse_body(EventCreate, body).spec()

        def create(uow: UnitOfWork) -> Answer:
            event, _ = operations.put_event(uow, spec, now=self.ctx.clock(), create_only=True)
            return _event_answer(self.ctx, uow, event.id, 201)

        respond(resp, write_once(self.ctx, req, body, create))


def _event_key(cursor: str) -> tuple[datetime, uuid.UUID]:
    starts_at, event_id = decode_keyset(cursor, 2)
    try:
        return datetime.fromisoformat(starts_at), uuid.UUID(event_id)
    except ValueError:
        raise invalid_cursor() from None


class Event:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, event_id: uuid.UUID) -> None:
        parse_query(NoQuery, req)
        with self.ctx.sessions() as session:
            view = catalog.get_event(session, event_id, now=self.ctx.clock())
            if view is None:
                raise NotFound("no such event")
            resp.media = _with_cancellation(self.ctx, session, view)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, event_id: uuid.UUID) -> None:
        require_operator(req)
        idempotency_key(req)
        body = read_json(req, self.ctx.settings.max_body_bytes)
        # A null is "leave as it is": none of these can be emptied.
        changes = parse_body(EventUpdate, body).model_dump(exclude_unset=True, exclude_none=True)

        def change(uow: UnitOfWork) -> Answer:
            operations.update_event(uow, event_id, changes)
            return _event_answer(self.ctx, uow, event_id, 200)

        respond(resp, write_once(self.ctx, req, body, change))


class EventCancellation:
    auth = "operator"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, event_id: uuid.UUID) -> None:
        """The event is cancelled at once; its bookings are cancelled and refunded by workers."""
        idempotency_key(req)

        def cancel(uow: UnitOfWork) -> Answer:
            messages = event_cancellation.cancel_event(uow, event_id, request_id=req.context.request_id)
            status, body, location, _ = _event_answer(self.ctx, uow, event_id, 202)
            return status, body, location, messages

        respond(resp, write_once(self.ctx, req, None, cancel))


class EventSeats:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, event_id: uuid.UUID) -> None:
        parse_query(NoQuery, req)
        now = self.ctx.clock()
        with self.ctx.sessions() as session:
            view = catalog.get_event(session, event_id, now=now)
            if view is None:
                raise NotFound("no such event")
            resp.data = catalog.seat_map_json(session, view, now)
        resp.content_type = falcon.MEDIA_JSON


class EventSeatBlocks:
    """POST .../seats/block and .../seats/unblock."""

    def __init__(self, ctx: Context, *, blocked: bool) -> None:
        self.ctx, self.blocked = ctx, blocked

    def on_post(self, req: falcon.Request, resp: falcon.Response, event_id: uuid.UUID) -> None:
        require_operator(req)
        idempotency_key(req)
        body = read_json(req, self.ctx.settings.max_body_bytes)
        seat_ids = parse_body(SeatSelection, body).seat_ids

        def block(uow: UnitOfWork) -> Answer:
            now = self.ctx.clock()
            released = operations.block_seats(uow, event_id, seat_ids, now=now, blocked=self.blocked)
            return 200, _blocked_body(event_id, seat_ids, self.blocked), None, released

        respond(resp, write_once(self.ctx, req, body, block))


def _blocked_body(event_id: uuid.UUID, seat_ids: list[uuid.UUID], blocked: bool) -> dict[str, Any]:
    return {"event_id": str(event_id), "seat_ids": [str(s) for s in seat_ids],
            "status": "blocked" if blocked else "available"}
