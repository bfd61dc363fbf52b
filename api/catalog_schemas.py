"""Shapes only the API has for the catalog: seat selections, pages, and the answers; the bodies
that create and change venues, events and resources are documents of services.catalog_documents."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from services.input_types import Strict


class SeatSelection(Strict):
    seat_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=1000, json_schema_extra={"uniqueItems": True})]

    @model_validator(mode="after")
    def _unique(self) -> SeatSelection:
        if len(set(self.seat_ids)) != len(self.seat_ids):
            raise ValueError("seat_ids must not repeat a seat")
        return self


class PageQuery(Strict):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, StringConstraints(max_length=400)] | None = None


# Response shapes.


class VenueDetailOut(BaseModel):
    id: uuid.UUID
    ref: str | None
    name: str
    city: str | None
    timezone: str
    seat_count: int


class SeatBlockOut(BaseModel):
    event_id: uuid.UUID
    seat_ids: list[uuid.UUID]
    status: Literal["blocked", "available"]


class VenuePage(BaseModel):
    items: list[VenueDetailOut]
    next_cursor: str | None
