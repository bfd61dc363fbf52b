"""Time-slot resources: clients search them with their free windows; operators create and change
them, with weekly hours in the resource's own time zone."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import falcon

from api.media import parse_body, parse_query, read_json
from api.representations import decode_keyset, encode_keyset, invalid_cursor, resource_body
from api.resources.bookings import idempotency_key, respond
from api.resources.operators import Answer, require_operator, write_once
from api.schemas import NoQuery, ResourceSearchQuery
from db.models import Resource as ResourceRow
from db.queries import resources
from db.unit_of_work import UnitOfWork
from domain.availability import Interval, distance_km
from domain.errors import NotFound
from domain.schedule import bookable_windows
from services import catalog as operations
from services.catalog_documents import ResourceCreate, ResourceUpdate
from services.context import Context

#: Without an explicit window, a resource's free time is shown for the coming week.
DEFAULT_HORIZON = timedelta(days=7)

def free_time(resource: ResourceRow, busy: list[Interval], within: Interval, now: datetime) -> list[Interval]:
    return bookable_windows(resources.schedule_of(resource), busy, within, now)


class Resources:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query, now = parse_query(ResourceSearchQuery, req), self.ctx.clock()
        within = Interval(query.available_from or now, query.available_to or now + DEFAULT_HORIZON)
        with self.ctx.sessions() as session:
            candidates = resources.search_resources(session, category=query.category, max_rate=query.max_rate)
            busy = resources.busy_periods(session, [r.id for r in candidates], within, now)
        found = []
        for resource in candidates:
            distance = _distance(resource, query.point())
            if query.radius_km is not None and (distance is None or distance > query.radius_km):
                continue
            free = free_time(resource, busy.get(resource.id, []), within, now)
            if query.available_from is not None and not free:
                continue
            found.append((_sort_key(resource, distance), resource_body(resource, distance, free)))
        resp.media = _page(sorted(found, key=lambda pair: pair[0]), query.limit, query.cursor)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_operator(req)
        idempotency_key(req)
        body = read_json(req, self.ctx.settings.max_body_bytes)
        spec = operations.ResourceSpec(parse_body(ResourceCreate, body).values(complete=True))

        def create(uow: UnitOfWork) -> Answer:
            resource, _ = operations.put_resource(uow, spec, create_only=True)
            return 201, self._body(resource), f"/v1/resources/{resource.id}", ()

        respond(resp, write_once(self.ctx, req, body, create))

    def _body(self, resource: ResourceRow) -> dict[str, Any]:
        return resource_body(resource, None, [])


SortKey = tuple[int, float, str, str]


def _sort_key(resource: ResourceRow, distance: float | None) -> SortKey:
    """Nearest first when a point is given (those without a location last), else by name."""
    return (distance is None, distance or 0.0, resource.name, str(resource.id))


def _page(found: list[tuple[SortKey, dict[str, Any]]], limit: int, cursor: str | None) -> dict[str, Any]:
    if cursor is not None:
        after = _resource_key(cursor)
        found = [(key, body) for key, body in found if key > after]
    page = found[:limit]
    last = page[-1][0] if len(found) > limit else None
    return {"items": [body for _, body in page], "next_cursor": encode_keyset(*last) if last else None}


def _resource_key(cursor: str) -> SortKey:
    unplaced, distance, name, resource_id = decode_keyset(cursor, 4)
    try:
        return (unplaced == "True", float(distance), name, resource_id)
    except ValueError:
        raise invalid_cursor() from None


def _distance(resource: ResourceRow, point: tuple[float, float] | None) -> float | None:
    if point is None or resource.lat is None or resource.lng is None:
        return None
    return round(distance_km(point[0], point[1], resource.lat, resource.lng), 3)


class Resource:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, resource_id: uuid.UUID) -> None:
        parse_query(NoQuery, req)
        now = self.ctx.clock()
        within = Interval(now, now + DEFAULT_HORIZON)
        with self.ctx.sessions() as session:
            resource = session.get(ResourceRow, resource_id)
            if resource is None:
                raise NotFound("no such resource")
            busy = resources.busy_periods(session, [resource.id], within, now).get(resource.id, [])
            resp.media = resource_body(resource, None, free_time(resource, busy, within, now))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, resource_id: uuid.UUID) -> None:
        require_operator(req)
        idempotency_key(req)
        body = read_json(req, self.ctx.settings.max_body_bytes)
        values = parse_body(ResourceUpdate, body).values(complete=False)

        def change(uow: UnitOfWork) -> Answer:
            resource = operations.update_resource(uow, resource_id, values)
            return 200, resource_body(resource, None, []), f"/v1/resources/{resource.id}", ()

        respond(resp, write_once(self.ctx, req, body, change))
