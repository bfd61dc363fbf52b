"""Inventory clients browse: events with their seat maps, and time-slot resources."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import falcon

from api.media import parse_query
from api.representations import event_body, iso, seat_map_body
from api.schemas import NoQuery, ResourceSearchQuery
from db.models import Resource
from db.queries import catalog
from domain.availability import Interval, distance_km, free_windows
from domain.errors import NotFound
from services.context import Context

#: Without an explicit window, a resource's free time is shown for the coming week.
DEFAULT_HORIZON = timedelta(days=7)


class Events:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        parse_query(NoQuery, req)
        with self.ctx.sessions() as session:
            events = catalog.list_events(session)
        resp.media = {"items": [event_body(view) for view in events], "next_cursor": None}


class Event:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, event_id: uuid.UUID) -> None:
        parse_query(NoQuery, req)
        with self.ctx.sessions() as session:
            view = catalog.get_event(session, event_id)
        if view is None:
            raise NotFound("no such event")
        resp.media = event_body(view)


class EventSeats:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, event_id: uuid.UUID) -> None:
        parse_query(NoQuery, req)
        with self.ctx.sessions() as session:
            view = catalog.get_event(session, event_id)
            if view is None:
                raise NotFound("no such event")
            seats = catalog.seat_map(session, view)
        resp.media = seat_map_body(event_id, seats)


class Resources:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = parse_query(ResourceSearchQuery, req)
        now = self.ctx.clock()
        within = Interval(query.available_from or now, query.available_to or now + DEFAULT_HORIZON)
        with self.ctx.sessions() as session:
            candidates = catalog.search_resources(session, category=query.category, max_rate=query.max_rate)
            ids = [resource.id for resource in candidates]
            windows = catalog.windows_of(session, ids, within=within)
            busy = catalog.busy_periods(session, ids, within=within)
        items = []
        for resource in candidates:
            distance = _distance(resource, query.point())
            if query.radius_km is not None and (distance is None or distance > query.radius_km):
                continue
            free = free_windows(windows.get(resource.id, []), busy.get(resource.id, []), within)
            if query.available_from is not None and not free:
                continue
            items.append(_resource_body(resource, distance, free))
        if query.point() is not None:
            items.sort(key=lambda item: (item["distance_km"] is None, item["distance_km"] or 0.0))
        resp.media = {"items": items, "next_cursor": None}


def _distance(resource: Resource, point: tuple[float, float] | None) -> float | None:
    if point is None or resource.lat is None or resource.lng is None:
        return None
    return round(distance_km(point[0], point[1], resource.lat, resource.lng), 3)


def _resource_body(resource: Resource, distance: float | None, free: list[Interval]) -> dict[str, Any]:
    return {
        "id": str(resource.id), "name": resource.name, "category": resource.category,
        "lat": resource.lat, "lng": resource.lng, "rate_per_minute": resource.rate_per_minute,
        "currency": resource.currency, "distance_km": distance,
        "free_windows": [{"starts_at": iso(w.starts_at), "ends_at": iso(w.ends_at)} for w in free],
    }
