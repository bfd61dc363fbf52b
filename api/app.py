"""`create_app` wires plain resource classes to routes; collaborators are passed in."""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon
import falcon.media
import orjson
import redis

from api import errors
from api.console import add_console_routes
from api.metrics import Instrumentation, Metrics, PipelineState
from api.middleware import Authentication, RequestId
from api.openapi import SWAGGER_UI_ASSETS, DocsPage, OpenAPIDocument
from api.protection import RateLimiting, RateLimits, SecurityHeaders
from api.resources.bookings import (
    Booking,
    BookingCancellation,
    BookingConfirmation,
    BookingPayment,
    BookingRefund,
    Bookings,
)
from api.resources.catalog import Event, EventCancellation, Events, EventSeatBlocks, EventSeats
from api.resources.checkout_return import CheckoutReturnPage, CheckoutReturnStatus
from api.resources.health import Health, Readiness
from api.resources.time_slots import Resource, Resources
from api.resources.venues import Venue, Venues
from api.resources.webhook_endpoints import (
    WebhookDeliveries,
    WebhookDeliveryRetry,
    WebhookEndpointItem,
    WebhookEndpoints,
)
from api.resources.webhooks import StripeWebhook
from services.context import Context
from tasks.queue_inspection import QueueInspection, QueueInspector
from tasks.worker_activity import WorkerRegistry

if TYPE_CHECKING:
    # Falcon 4 types App(middleware=...) with this alias without exporting it from a public module.
    from falcon._typing import SyncMiddleware


def create_app(
    ctx: Context, *, redis_client: redis.Redis, inspector: QueueInspection | None = None
) -> falcon.App[falcon.Request, falcon.Response]:
    """`inspector` reads the broker's queues for the console; Redis's when not given."""
    settings = ctx.settings
    limiting = RateLimiting(
        settings.redis_url, RateLimits.parse_spec(settings.rate_limits), settings.broker_namespace,
        address_header=settings.trusted_proxy_header,
    )
    instrumentation = Instrumentation()
    middleware: list[SyncMiddleware[falcon.Request, falcon.Response]] = [
        instrumentation,
        SecurityHeaders(hsts=settings.is_production),
        RequestId(),
        Authentication(ctx.sessions, budget=limiting),
        limiting,
    ]
    if settings.cors_allowed_origins:
        middleware.insert(0, falcon.CORSMiddleware(
            allow_origins=list(settings.cors_allowed_origins),
            expose_headers=["Location", "Retry-After", "Idempotent-Replayed", "X-Request-ID"],
        ))
    app = falcon.App(middleware=middleware)
    # orjson: several times faster than the stdlib for every answer; still strict RFC 8259 JSON.
    json_handler = falcon.media.JSONHandler(dumps=orjson.dumps, loads=orjson.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.req_options.strip_url_path_trailing_slash = True
    inspector = inspector or QueueInspector(redis_client, ctx.settings.broker_namespace)
    errors.register(app)
    app.add_route("/v1/bookings", Bookings(ctx))
    app.add_route("/v1/bookings/{booking_id:uuid}", Booking(ctx))
    app.add_route("/v1/bookings/{booking_id:uuid}/confirm", BookingConfirmation(ctx))
    app.add_route("/v1/bookings/{booking_id:uuid}/cancel", BookingCancellation(ctx))
    app.add_route("/v1/bookings/{booking_id:uuid}/payment", BookingPayment(ctx))
    app.add_route("/v1/bookings/{booking_id:uuid}/refund", BookingRefund(ctx))
    app.add_route("/v1/events", Events(ctx))
    app.add_route("/v1/events/{event_id:uuid}", Event(ctx))
    app.add_route("/v1/events/{event_id:uuid}/seats", EventSeats(ctx))
    app.add_route("/v1/events/{event_id:uuid}/cancel", EventCancellation(ctx))
    app.add_route("/v1/events/{event_id:uuid}/seats/block", EventSeatBlocks(ctx, blocked=True))
    app.add_route("/v1/events/{event_id:uuid}/seats/unblock", EventSeatBlocks(ctx, blocked=False))
    app.add_route("/v1/venues", Venues(ctx))
    app.add_route("/v1/venues/{venue_id:uuid}", Venue(ctx))
    app.add_route("/v1/resources", Resources(ctx))
    app.add_route("/v1/resources/{resource_id:uuid}", Resource(ctx))
    app.add_route("/v1/webhooks/stripe", StripeWebhook(ctx))
    app.add_route("/v1/webhook-endpoints", WebhookEndpoints(ctx))
    app.add_route("/v1/webhook-endpoints/{endpoint_id:uuid}", WebhookEndpointItem(ctx))
    app.add_route("/v1/webhook-endpoints/{endpoint_id:uuid}/deliveries", WebhookDeliveries(ctx))
    app.add_route(
        "/v1/webhook-endpoints/{endpoint_id:uuid}/deliveries/{delivery_id:uuid}/retry", WebhookDeliveryRetry(ctx)
    )
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Readiness(settings))
    if settings.metrics_bind is None:
        # Otherwise gunicorn's master serves them on METRICS_BIND (api.metrics.serve_metrics).
        app.add_route("/metrics", Metrics(PipelineState(ctx.sessions, inspector, settings)))
    add_console_routes(app, ctx, inspector, WorkerRegistry(redis_client, settings.broker_namespace))
    app.add_route("/checkout/return", CheckoutReturnPage())
    app.add_route("/checkout/return/status", CheckoutReturnStatus(ctx))
    app.add_route("/openapi.json", OpenAPIDocument())
    app.add_route("/docs", DocsPage())
    app.add_static_route("/docs/static", str(SWAGGER_UI_ASSETS))
    instrumentation.count_static_routes(app)
    return app
