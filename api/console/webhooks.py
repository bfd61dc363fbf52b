"""Webhook endpoints whose deliveries fail, and one endpoint's delivery log with retries: what an
operator looks at when `webhook_deliveries{status="failed"}` rises."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import falcon

from api.console.base import ConsolePage
from api.console.rendering import check_form_token, render
from api.errors import APIError
from db.queries.notifications import failing_endpoints
from services import webhook_endpoints

#: The log page shows this many of an endpoint's deliveries, newest first.
LOG_LIMIT = 100


class FailingEndpoints(ConsolePage):
    def data(self) -> dict[str, Any]:
        now = self.ctx.clock()
        with self.ctx.sessions() as session:
            found = failing_endpoints(session)
        return {"endpoints": [{
            "endpoint_id": e.endpoint_id, "client_id": e.client_id, "client": e.client_name, "url": e.url,
            "host": urlsplit(e.url).hostname or "", "failed": e.failed, "retrying": e.retrying,
            "last_status_code": e.last_status_code, "last_error": e.last_error,
            "oldest_undelivered_seconds": max((now - e.oldest_undelivered_at).total_seconds(), 0.0),
        } for e in found]}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(req, resp, "webhooks.html", at=self.ctx.clock(), **self.data())


class FailingEndpointsJson(FailingEndpoints):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.data()


class EndpointDeliveries(ConsolePage):
    """One endpoint's delivery log, as its client reads it from the API, with the API's retry."""

    def data(self, endpoint_id: uuid.UUID) -> dict[str, Any]:
        client_id, url = webhook_endpoints.owner_of(self.ctx, endpoint_id)
        log = webhook_endpoints.delivery_log(self.ctx, client_id, endpoint_id, LOG_LIMIT)
        return {"endpoint_id": endpoint_id, "client_id": client_id, "url": url, "deliveries": log}

    def on_get(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        render(req, resp, "webhook_endpoint.html", at=self.ctx.clock(), done=req.get_param("done"),
               **self.data(endpoint_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        form = req.get_media(default_when_empty={})  # the page's form posts urlencoded fields
        if not check_form_token(req, form):
            raise APIError(falcon.HTTP_403, "forbidden", "the form token does not match")
        client_id, _ = webhook_endpoints.owner_of(self.ctx, endpoint_id)
        # `do` is "retry-failed" (every delivery given up on) or "retry:<delivery id>" (one).
        command, _, one = str(form.get("do", "")).partition(":")
        if command == "retry-failed" and not one:
            retried = webhook_endpoints.retry_failed_deliveries(self.ctx, endpoint_id)
        elif command == "retry" and one:
            try:
                delivery_id = uuid.UUID(one)
            except ValueError:
                raise APIError(falcon.HTTP_422, "invalid_action", "retry:<delivery id> names a delivery") from None
            webhook_endpoints.retry_delivery(self.ctx, client_id, endpoint_id, delivery_id)
            retried = 1
        else:
            raise APIError(falcon.HTTP_422, "invalid_action", "do is retry-failed or retry:<delivery id>")
        raise falcon.HTTPSeeOther(f"/ops/webhooks/{endpoint_id}?done={retried}")


class EndpointDeliveriesJson(EndpointDeliveries):
    def on_get(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        resp.media = self.data(endpoint_id)
