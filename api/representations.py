"""JSON representations of what the API returns (shapes documented in api.schemas); a booking's
is in services.representation, since webhook deliveries carry it too."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import falcon

from api.errors import APIError
from db.queries.catalog import EventView, SeatState
from services.representation import booking_body, iso

__all__ = ["booking_body", "decode_cursor", "encode_cursor", "event_body", "iso", "seat_map_body"]


def event_body(view: EventView) -> dict[str, Any]:
    event, venue = view.event, view.venue
    return {
        "id": str(event.id), "name": event.name,
        "venue": {"id": str(venue.id), "name": venue.name, "city": venue.city},
        "starts_at": iso(event.starts_at), "ends_at": iso(event.ends_at),
        "currency": event.currency, "prices": view.prices,
    }


def seat_map_body(event_id: uuid.UUID, seats: list[SeatState]) -> dict[str, Any]:
    summary = {"available": 0, "held": 0, "booked": 0}
    for state in seats:
        summary[state.status] += 1
    summary["total"] = len(seats)
    return {
        "event_id": str(event_id),
        "seats": [
            {
                "id": str(s.seat.id), "row": s.seat.row, "number": s.seat.number,
                "tier": s.seat.tier, "price": s.price, "status": s.status,
            }
            for s in seats
        ],
        "summary": summary,
    }


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
