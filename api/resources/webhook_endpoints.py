"""/v1/webhook-endpoints: a client's endpoints, their delivery logs, and retrying a delivery."""

from __future__ import annotations

import uuid
from typing import Any

import falcon

from api.media import parse_body, parse_query, read_json
from api.schemas import WebhookDeliveryQuery, WebhookEndpointCreate
from db.models import WebhookEndpoint
from services import webhook_endpoints
from services.context import Context
from services.representation import iso
from services.webhook_endpoints import DeliveryEntry


def endpoint_body(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    return {
        "id": str(endpoint.id), "url": endpoint.url, "events": list(endpoint.events),
        "created_at": iso(endpoint.created_at), **({"secret": endpoint.secret} if with_secret else {}),
    }


def delivery_body(entry: DeliveryEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id), "event_id": entry.event_id, "type": entry.type, "status": entry.status,
        "attempts": entry.attempts, "last_status_code": entry.last_status_code, "last_error": entry.last_error,
        "next_attempt_at": iso(entry.next_attempt_at), "created_at": iso(entry.created_at),
    }


class WebhookEndpoints:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = parse_body(WebhookEndpointCreate, read_json(req, self.ctx.settings.max_body_bytes))
        endpoint = webhook_endpoints.register_endpoint(
            self.ctx, req.context.principal.client_id, request.url, request.events,
        )
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/webhook-endpoints/{endpoint.id}"
        resp.media = endpoint_body(endpoint, with_secret=True)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        endpoints = webhook_endpoints.list_endpoints(self.ctx, req.context.principal.client_id)
        resp.media = {"items": [endpoint_body(endpoint) for endpoint in endpoints]}


class WebhookEndpointItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        webhook_endpoints.delete_endpoint(self.ctx, req.context.principal.client_id, endpoint_id)
        resp.status = falcon.HTTP_204


class WebhookDeliveries:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        query = parse_query(WebhookDeliveryQuery, req)
        log = webhook_endpoints.delivery_log(self.ctx, req.context.principal.client_id, endpoint_id, query.limit)
        resp.media = {"items": [delivery_body(entry) for entry in log]}


class WebhookDeliveryRetry:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> None:
        webhook_endpoints.retry_delivery(self.ctx, req.context.principal.client_id, endpoint_id, delivery_id)
        resp.status = falcon.HTTP_202
        resp.media = {"id": str(delivery_id), "status": "pending"}
