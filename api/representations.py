"""JSON representations of what the API returns (shapes documented in api.schemas); a booking's
is in services.representation, since webhook deliveries carry it too."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import falcon
import orjson

from api.errors import APIError
from db.models import Resource, Venue
from db.queries.catalog import EventView
from domain.availability import Interval
from services.representation import booking_body, iso

__all__ = ["booking_body", "decode_cursor", "encode_cursor", "event_body", "iso"]


def event_body(view: EventView, now: datetime) -> dict[str, Any]:
    event, venue, places = view.event, view.venue, view.places
    body: dict[str, Any] = {
        "id": str(event.id), "ref": event.ref, "name": event.name,
        "kind": "seated" if venue is not None else "general_admission",
        "venue": {"id": str(venue.id), "name": venue.name, "city": venue.city} if venue is not None else None,
        "starts_at": iso(event.starts_at), "ends_at": iso(event.ends_at),
        "sales_start_at": iso(event.sales_start_at), "sales_end_at": iso(event.sales_end_at),
        "status": view.sale_window.status(now).value,
        "currency": event.currency, "prices": view.prices,
    }
    if places is not None:
        body |= {"capacity": places.capacity, "held": places.held, "sold": places.sold, "available": places.available}
    return body


def venue_body(venue: Venue, seat_count: int) -> dict[str, Any]:
    return {"id": str(venue.id), "ref": venue.ref, "name": venue.name, "city": venue.city,
            "timezone": venue.timezone, "seat_count": seat_count}


def resource_body(resource: Resource, distance: float | None, free: list[Interval]) -> dict[str, Any]:
    return {
        "id": str(resource.id), "ref": resource.ref, "name": resource.name, "category": resource.category,
        "lat": resource.lat, "lng": resource.lng, "rate_per_minute": resource.rate_per_minute,
        "currency": resource.currency, "distance_km": distance,
        "free_windows": [{"starts_at": iso(w.starts_at), "ends_at": iso(w.ends_at)} for w in free],
        "timezone": resource.timezone, "weekly_hours": resource.weekly_hours, "exceptions": resource.exceptions,
        "buffer_minutes": resource.buffer_minutes, "min_notice_minutes": resource.min_notice_minutes,
        "max_advance_days": resource.max_advance_days, "granularity_minutes": resource.granularity_minutes,
    }


def encode_keyset(*values: Any) -> str:
    """A page cursor: the sort key of the last item on the page, opaque to clients."""
    return base64.urlsafe_b64encode(orjson.dumps([str(v) for v in values])).decode()


def decode_keyset(cursor: str, length: int) -> list[str]:
    """The sort key an `encode_keyset` cursor holds; 400 `invalid_cursor` for anything else."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error):
        values = None
    if not isinstance(values, list) or len(values) != length or not all(isinstance(v, str) for v in values):
        raise invalid_cursor()
    return values


def invalid_cursor() -> APIError:
    return APIError(
        falcon.HTTP_400, "invalid_cursor", "the cursor is not one this API gave: use next_cursor as it is",
        details=[{"field": "cursor", "code": "invalid_cursor"}],
    )


def encode_cursor(created_at: datetime, booking_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{booking_id}".encode()).decode()


#: Longer than any cursor `encode_cursor` makes.
MAX_CURSOR_LENGTH = 200


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; 400 `invalid_cursor` for anything `encode_cursor` did not make."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        created_at, booking_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created_at), uuid.UUID(booking_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise APIError(
            falcon.HTTP_400, "invalid_cursor", "the cursor is not one this API gave: use next_cursor as it is",
            details=[{"field": "cursor", "code": "invalid_cursor"}],
        ) from None
