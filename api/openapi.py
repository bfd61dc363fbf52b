"""The OpenAPI 3.1 description, assembled from the pydantic models, and a page rendering it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon
import swagger_ui
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api import catalog_schemas, schemas
from services import catalog_documents

ERRORS = {
    "400": "Malformed request (bad JSON, missing Idempotency-Key, unknown or bad query parameter, bad cursor)",
    "401": "No or bad API key (a bad key also spends its address's budget: 429 after a few)",
    "403": "A client key where an operator key is needed",
    "404": "Not found, or another client's",
    "409": "The booking's state does not allow this (or, for the catalog: ref taken, seat held)",
    "413": "Body too large",
    "415": "Body is not application/json",
    "422": "Validation failed (per-field details) or idempotency key reused",
    "429": "Too many requests; retry after Retry-After",
    "503": "A dependency is down; retry after Retry-After",
}
#: Answers any /v1 route can give: all are rate limited (api.protection), and all need PostgreSQL
#: (api.errors answers 503 while it is down).
EVERYWHERE = ("429", "503")
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 0}}}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": True,
    "description": "Scoped to the client; the same key with the same body replays the first answer.",
    # Blank keys are refused (400) like missing ones: at least one non-blank character.
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "\\S"},
}
BOOKING_ID = {"name": "booking_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
EVENT_ID = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
ENDPOINT_ID = {"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
DELIVERY_ID = {"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
VENUE_ID = {"name": "venue_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
RESOURCE_ID = {"name": "resource_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _error(code: str, description: str | None = None) -> dict[str, Any]:
    response = _json(schemas.ErrorOut, description or ERRORS[code])
    if code in ("429", "503"):
        response["headers"] = RETRY_AFTER
    return response


def _operation(
    summary: str, ok: tuple[str, type[BaseModel], str], *, errors: tuple[str, ...] = ("401",),
    body: type[BaseModel] | None = None, parameters: list[dict[str, Any]] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    status, model, description = ok
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {status: _json(model, description)}
        | {code: _error(code) for code in (*errors, *EVERYWHERE)},
    }
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if not secured:
        op["security"] = []
    return op


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    # api.media.parse_query reads `?near=` as if `near` were not given (forms send empty fields).
    return [
        {"name": name, "in": "query", "required": False, "allowEmptyValue": True, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def _ops_paths() -> dict[str, Any]:
    """The operators' pages: an operator key as Bearer token or as the HTTP Basic password."""
    operator: list[dict[str, list[str]]] = [{"apiKey": []}, {"operatorBasic": []}]
    denied = {
        "401": _json(schemas.ErrorOut, "No or bad key (the browser is asked for Basic credentials)"),
        "403": _json(schemas.ErrorOut, "A client key, not an operator key"),
    }
    html = {"200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    pages = {
        "/ops/": "Overview: message rates, queues, booking flow and backlogs (HTML)",
        "/ops/queues": "Queues: depth, latency, delayed and retrying messages (HTML)",
        "/ops/workers": "Live worker processes and the message each thread runs (HTML)",
        "/ops/dead": "Dead letters, filtered by queue, actor and error (HTML)",
        "/ops/bookings": "Find a booking by id, email, PaymentIntent or Checkout Session id (HTML)",
        "/ops/bookings/{booking_id}": "One booking's timeline and operator actions (HTML)",
        "/ops/events": "Per event capacity, held, sold and revenue (HTML)",
        "/ops/webhooks": "Webhook endpoints with failing deliveries (HTML)",
        "/ops/webhooks/{endpoint_id}": "One webhook endpoint's delivery log, with retries (HTML)",
    }
    feeds = {
        "/ops/api/overview": "The overview's figures", "/ops/api/queues": "Queue depths and live workers",
        "/ops/api/delayed": "Delayed and retrying messages", "/ops/api/workers": "Live worker processes",
        "/ops/api/dead": "Dead letters matching queue, actor, error",
        "/ops/api/bookings": "Bookings matching q", "/ops/api/bookings/{booking_id}": "One booking's timeline",
        "/ops/api/events": "Event sales",
        "/ops/api/webhooks": "Webhook endpoints with failing deliveries",
        "/ops/api/webhooks/{endpoint_id}": "One webhook endpoint's delivery log",
    }
    paths: dict[str, Any] = {
        path: {"get": {"summary": summary, "security": operator, "responses": html | denied}}
        for path, summary in pages.items()
    } | {
        path: {"get": {"summary": f"{summary} (JSON)", "security": operator, "responses": {
            "200": {"description": "The figures", "content": {"application/json": {"schema": {"type": "object"}}}},
        } | denied}}
        for path, summary in feeds.items()
    }
    paths["/ops/api/queues"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = _QUEUES_SCHEMA
    for path in ("/ops/bookings/{booking_id}", "/ops/api/bookings/{booking_id}"):
        paths[path]["get"]["parameters"] = [
            {"name": "booking_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]
        paths[path]["get"]["responses"]["404"] = _json(schemas.ErrorOut, "No such booking")
    for path in ("/ops/webhooks/{endpoint_id}", "/ops/api/webhooks/{endpoint_id}"):
        paths[path]["get"]["parameters"] = [
            {"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]
        paths[path]["get"]["responses"]["404"] = _json(schemas.ErrorOut, "No such webhook endpoint")
    paths["/ops/webhooks/{endpoint_id}"]["post"] = {
        "summary": "Retry one delivery, or every failed one, of the endpoint (form with its CSRF token)",
        "security": operator,
        "parameters": paths["/ops/webhooks/{endpoint_id}"]["get"]["parameters"],
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["token", "do"], "properties": {
                "token": {"type": "string"},
                "do": {"type": "string", "description": "retry-failed, or retry:<delivery id> for one"},
            }}}}},
        "responses": {"303": {"description": "Done; back to the log"},
                      "404": _json(schemas.ErrorOut, "No such webhook endpoint or delivery"),
                      "422": _json(schemas.ErrorOut, "Unknown action")} | denied,
    }
    for path in ("/ops/bookings", "/ops/api/bookings"):
        paths[path]["get"]["parameters"] = [{"name": "q", "in": "query", "required": False, "schema": {"type": "string"}}]
    for path in ("/ops/dead", "/ops/api/dead"):
        paths[path]["get"]["parameters"] = [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in ("queue", "actor", "error")]
    paths["/ops/dead"]["post"] = {
        "summary": "Retry or delete dead letters: a selection, one, or all a filter matches (form with its CSRF token)",
        "security": operator,
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["token", "do"], "properties": {
                "token": {"type": "string"},
                "do": {"type": "string", "description": "retry or delete; with -matching for every letter the "
                       "filter matches, or :<queue>/<redis id> for one"},
                "letter": {"type": "array", "items": {"type": "string"}, "description": "<queue>/<redis id>"},
                "queue": {"type": "string"}, "actor": {"type": "string"}, "error": {"type": "string"},
            }}}}},
        "responses": {"303": {"description": "Done; back to the list"},
                      "422": _json(schemas.ErrorOut, "Unknown action")} | denied,
    }
    return paths


_QUEUES_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["queues", "workers"], "additionalProperties": False,
    "properties": {
        "queues": {"type": "array", "items": {"type": "object", "required": [
            "name", "ready", "delayed", "in_flight", "dead", "latency_seconds"], "properties": {
            "name": {"type": "string"}, "ready": {"type": "integer"}, "delayed": {"type": "integer"},
            "in_flight": {"type": ["integer", "null"]}, "dead": {"type": "integer"}, "latency_seconds": {"type": "number"},
        }}},
        "workers": {"type": "array", "items": {"type": "object", "required": [
            "host", "pid", "queues", "threads", "busy", "heartbeat_at", "current"], "properties": {
            "host": {"type": "string"}, "pid": {"type": "integer"},
            "queues": {"type": "array", "items": {"type": "string"}}, "threads": {"type": "integer"},
            "busy": {"type": "integer"}, "heartbeat_at": {"type": "string", "format": "date-time"},
            "current": {"type": "array", "items": {"type": "object"}},
        }}},
    },
}


def _webhook_endpoint_paths() -> dict[str, Any]:
    """A client's webhook endpoints (docs/notifications.md)."""
    endpoint = "/v1/webhook-endpoints/{endpoint_id}"
    return {
        "/v1/webhook-endpoints": {
            "post": _operation(
                "Register a webhook endpoint; its signing secret is in this answer only",
                ("201", schemas.WebhookEndpointOut, "Registered, with its secret"),
                errors=("400", "401", "413", "415", "422"), body=schemas.WebhookEndpointCreate,
            ),
            "get": _operation("List the client's webhook endpoints", ("200", schemas.WebhookEndpointList, "Endpoints")),
        },
        endpoint: {"delete": {
            "summary": "Delete a webhook endpoint and its deliveries", "parameters": [ENDPOINT_ID],
            "responses": {"204": {"description": "Deleted"}}
            | {code: _error(code) for code in ("401", "404", *EVERYWHERE)},
        }},
        f"{endpoint}/deliveries": {"get": _operation(
            "The endpoint's delivery log, newest first", ("200", schemas.WebhookDeliveryLog, "Deliveries"),
            errors=("400", "401", "404", "422"), parameters=[ENDPOINT_ID, *_query(schemas.WebhookDeliveryQuery)],
        )},
        f"{endpoint}/deliveries/{{delivery_id}}/retry": {"post": _operation(
            "Deliver again now", ("202", schemas.WebhookDeliveryRetried, "Due now"),
            errors=("401", "404"), parameters=[ENDPOINT_ID, DELIVERY_ID],
        )},
    }


def _catalog_paths() -> dict[str, Any]:
    """The catalog: clients read it; operators write it, each write once per Idempotency-Key."""
    c, d = catalog_schemas, catalog_documents
    write = ("400", "401", "403", "409", "413", "415", "422")
    page = ("400", "401")
    read = ("400", "401", "404")
    return {
        "/v1/venues": {
            "post": _operation("Create a venue with its seat layout (operators)",
                               ("201", c.VenueDetailOut, "Created"), errors=write, body=d.VenueCreate,
                               parameters=[IDEMPOTENCY_KEY]),
            "get": _operation("List venues", ("200", c.VenuePage, "A page"), errors=page,
                              parameters=_query(c.PageQuery)),
        },
        "/v1/venues/{venue_id}": {"get": _operation(
            "Read a venue", ("200", c.VenueDetailOut, "The venue"), errors=read, parameters=[VENUE_ID],
        )},
        "/v1/events": {
            "get": _operation("List events, by start time", ("200", schemas.EventPage, "A page"), errors=page,
                              parameters=_query(c.PageQuery)),
            "post": _operation("Create an event, seated (venue_id) or general admission (capacity) (operators)",
                               ("201", schemas.EventOut, "Created"), errors=write, body=d.EventCreate,
                               parameters=[IDEMPOTENCY_KEY]),
        },
        "/v1/events/{event_id}": {
            "get": _operation("Read an event", ("200", schemas.EventOut, "The event"), errors=read,
                              parameters=[EVENT_ID]),
            "patch": _operation("Change an event's name, prices or sale window (operators)",
                                ("200", schemas.EventOut, "Changed"), errors=(*write, "404"), body=d.EventUpdate,
                                parameters=[EVENT_ID, IDEMPOTENCY_KEY]),
        },
        "/v1/events/{event_id}/cancel": {"post": _operation(
            "Cancel an event (operators): no new bookings; workers cancel and refund in full every live one",
            ("202", schemas.EventOut, "Accepted; `cancellation` shows the progress"), errors=(*write, "404"),
            parameters=[EVENT_ID, IDEMPOTENCY_KEY],
        )},
        "/v1/events/{event_id}/seats/block": {"post": _operation(
            "Block seats of the event (operators); 409 seat_held if a live booking holds one",
            ("200", c.SeatBlockOut, "Blocked"), errors=(*write, "404"), body=c.SeatSelection,
            parameters=[EVENT_ID, IDEMPOTENCY_KEY],
        )},
        "/v1/events/{event_id}/seats/unblock": {"post": _operation(
            "Unblock seats of the event (operators)", ("200", c.SeatBlockOut, "Unblocked"),
            errors=(*write, "404"), body=c.SeatSelection, parameters=[EVENT_ID, IDEMPOTENCY_KEY],
        )},
        "/v1/resources": {
            "get": _operation("Search time-slot resources", ("200", schemas.ResourcePage, "Matching resources"),
                              errors=page, parameters=_query(schemas.ResourceSearchQuery)),
            "post": _operation("Create a time-slot resource with its weekly hours (operators)",
                               ("201", schemas.ResourceOut, "Created"), errors=write, body=d.ResourceCreate,
                               parameters=[IDEMPOTENCY_KEY]),
        },
        "/v1/resources/{resource_id}": {
            "get": _operation("Read a resource with its free windows for the coming week",
                              ("200", schemas.ResourceOut, "The resource"), errors=read,
                              parameters=[RESOURCE_ID]),
            "patch": _operation("Change a resource; bookings made stay (operators)",
                                ("200", schemas.ResourceOut, "Changed"), errors=(*write, "404"),
                                body=d.ResourceUpdate, parameters=[RESOURCE_ID, IDEMPOTENCY_KEY]),
        },
    }


def _with_examples(components: dict[str, Any]) -> dict[str, Any]:
    for name, examples in schemas.EXAMPLES.items():
        if name in components:
            components[name] = {**components[name], "examples": examples}
    return components


#: Routes without a key are limited per client address (api.protection).
ADDRESS_LIMITED = _error("429", "Too many requests from this address; retry after Retry-After")


def build_spec() -> dict[str, Any]:
    c, d = catalog_schemas, catalog_documents
    requests = (schemas.BookingCreate, schemas.PaymentRetry, schemas.OperatorCancel, schemas.OperatorRefund,
                schemas.WebhookEndpointCreate, d.VenueCreate, d.EventCreate, d.EventUpdate, c.SeatSelection,
                d.ResourceCreate, d.ResourceUpdate)
    models: list[type[BaseModel]] = [
        *requests, schemas.BookingOut, schemas.BookingPage, schemas.ErrorOut, schemas.EventOut,
        schemas.EventPage, schemas.SeatMap, schemas.ResourceOut, schemas.ResourcePage, schemas.BookingStatusOut,
        schemas.WebhookEndpointOut, schemas.WebhookEndpointList, schemas.WebhookDeliveryLog,
        schemas.WebhookDeliveryRetried, c.VenueDetailOut, c.VenuePage, c.SeatBlockOut,
    ]
    _, defs = models_json_schema(
        [(m, "validation" if m in requests else "serialization") for m in models],
        ref_template="#/components/schemas/{model}",
    )
    mutate = ("400", "401", "404", "409", "413", "415", "422")
    paths = {
        "/v1/bookings": {
            "post": _operation(
                "Submit a booking request", ("202", schemas.BookingOut, "Accepted; status `requested`"),
                errors=("400", "401", "413", "415", "422"), body=schemas.BookingCreate,
                parameters=[IDEMPOTENCY_KEY],
            ),
            "get": _operation(
                "List the client's bookings, newest first (operators: search every client's)",
                ("200", schemas.BookingPage, "A page"),
                errors=("400", "401", "403"), parameters=_query(schemas.BookingListQuery),
            ),
        },
        "/v1/bookings/{booking_id}": {"get": _operation(
            "Read a booking (poll until settled; Retry-After while not)",
            ("200", schemas.BookingOut, "The booking"), errors=("400", "401", "404"), parameters=[BOOKING_ID],
        )},
        "/v1/bookings/{booking_id}/confirm": {"post": _operation(
            "Confirm an authorized booking (capture is enqueued)", ("202", schemas.BookingOut, "Accepted"),
            errors=mutate, parameters=[BOOKING_ID, IDEMPOTENCY_KEY],
        )},
        "/v1/bookings/{booking_id}/cancel": {"post": {
            **_operation(
                "Cancel a booking (release or refund is enqueued); an operator may choose the refund",
                ("202", schemas.BookingOut, "Accepted"), errors=mutate, parameters=[BOOKING_ID, IDEMPOTENCY_KEY],
            ),
            # A client sends no body; an operator may send {"refund": "full" | "policy" | "none"}.
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref(schemas.OperatorCancel)}}},
        }},
        "/v1/bookings/{booking_id}/refund": {"post": _operation(
            "Refund part of a confirmed booking (operators only)", ("202", schemas.BookingOut, "Accepted"),
            errors=(*mutate, "403"), body=schemas.OperatorRefund, parameters=[BOOKING_ID, IDEMPOTENCY_KEY],
        )},
        "/v1/bookings/{booking_id}/payment": {"post": _operation(
            "Retry the payment with a new payment method while awaiting payment",
            ("202", schemas.BookingOut, "Accepted"), errors=mutate, body=schemas.PaymentRetry,
            parameters=[BOOKING_ID, IDEMPOTENCY_KEY],
        )},
        "/v1/webhooks/stripe": {"post": {
            "summary": "Stripe webhook (verified by Stripe-Signature; no API key)", "security": [],
            "parameters": [{"name": "Stripe-Signature", "in": "header", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "200": {"description": "Recorded (or a duplicate delivery); `rejected` says why an event Stripe could not have sent was not applied"},
                "400": _error("400", "Bad or stale signature, not an event, or nested too deep"),
                "413": _error("413"),
                "429": _error("429", "Too many requests from this address; retry after Retry-After"),
                "500": _error("500", "The ledger write failed; Stripe retries"),
            },
        }},
        "/v1/events/{event_id}/seats": {"get": _operation(
            "Seat map of an event", ("200", schemas.SeatMap, "Seats with status and counts"),
            errors=("400", "401", "404"), parameters=[EVENT_ID],
        )},
        **_catalog_paths(),
        "/checkout/return": {"get": {
            "summary": "The page Stripe's hosted checkout sends the customer back to (HTML)", "security": [],
            "responses": {"200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}},
                          "429": ADDRESS_LIMITED},
        }},
        "/checkout/return/status": {"get": _operation(
            "A booking's status alone, for the return page", ("200", schemas.BookingStatusOut, "Its status"),
            errors=("400", "404"), secured=False, parameters=[
                {"name": "booking_id", "in": "query", "required": True, "schema": {"type": "string", "format": "uuid"}},
            ],
        )},
        "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {
            "200": {"description": "Alive"}, "429": ADDRESS_LIMITED,
        }}},
        "/readyz": {"get": {"summary": "Readiness of PostgreSQL and Redis", "security": [], "responses": {
            "200": {"description": "Ready"}, "503": {"description": "A dependency is down"}, "429": ADDRESS_LIMITED,
        }}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text exposition format), for an operator key; without METRICS_BIND only",
            "security": [{"apiKey": []}, {"operatorBasic": []}],
            "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "401": _json(schemas.ErrorOut, "No or bad key"),
                          "403": _json(schemas.ErrorOut, "A client key, not an operator key"),
                          "429": ADDRESS_LIMITED},
        }},
        **_webhook_endpoint_paths(),
        **_ops_paths(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bookings API", "version": "1.0.0",
            "description": "Book event seats and time slots; payments held and captured through Stripe.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": _with_examples(defs.get("$defs", {})),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "operatorBasic": {"type": "http", "scheme": "basic",
                                  "description": "Any user name; the operator API key as the password."},
            },
        },
        "security": [{"apiKey": []}],
        "paths": paths,
    }


class OpenAPIDocument:
    auth = None

    def __init__(self) -> None:
        self.spec = build_spec()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.spec


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Bookings API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""

#: Swagger UI's files, as the swagger-ui-py package ships them: served from here, so the page
#: works without reaching a CDN.
SWAGGER_UI_ASSETS = Path(swagger_ui.__file__).resolve().parent / "static"


class DocsPage:
    """Renders /openapi.json with Swagger UI."""

    auth = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = DOCS_PAGE
