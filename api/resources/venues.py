"""Venues and their seat layouts: operators create them, everyone reads them."""

from __future__ import annotations

import uuid

import falcon

from api.catalog_schemas import PageQuery
from api.media import parse_body, parse_query, read_json
from api.representations import decode_keyset, encode_keyset, invalid_cursor, venue_body
from api.resources.bookings import idempotency_key, respond
from api.resources.operators import Answer, require_operator, write_once
from api.schemas import NoQuery
from db.queries import venues
from db.unit_of_work import UnitOfWork
from domain.errors import NotFound
from services import catalog as operations
from services.catalog_documents import VenueCreate
from services.context import Context

#: A layout of 100,000 seats is about 8 MB of JSON; other bodies stay small.
MAX_VENUE_BODY_BYTES = 16 * 1024 * 1024


class Venues:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = parse_query(PageQuery, req)
        after = _venue_key(query.cursor) if query.cursor else None
        with self.ctx.sessions() as session:
            rows = venues.list_venues(session, limit=query.limit + 1, after=after)
        page = rows[: query.limit]
        last = page[-1][0] if len(rows) > query.limit else None
        resp.media = {
            "items": [venue_body(venue, count) for venue, count in page],
            "next_cursor": encode_keyset(last.name, last.id) if last else None,
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_operator(req)
        idempotency_key(req)
        body = read_json(req, MAX_VENUE_BODY_BYTES)
        spec = parse_body(VenueCreate, body).spec()

        def create(uow: UnitOfWork) -> Answer:
            venue, _ = operations.put_venue(uow, spec, now=self.ctx.clock(), create_only=True)
            return 201, venue_body(venue, len(spec.seats)), f"/v1/venues/{venue.id}", ()

        respond(resp, write_once(self.ctx, req, body, create))


def _venue_key(cursor: str) -> tuple[str, uuid.UUID]:
    name, venue_id = decode_keyset(cursor, 2)
    try:
        return name, uuid.UUID(venue_id)
    except ValueError:
        raise invalid_cursor() from None


class Venue:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, venue_id: uuid.UUID) -> None:
        parse_query(NoQuery, req)
        with self.ctx.sessions() as session:
            found = venues.get_venue(session, venue_id)
        if found is None:
            raise NotFound("no such venue")
        resp.media = venue_body(*found)
