"""The operators' console under /ops/: server-rendered pages that refresh themselves with htmx,
each with its data as JSON under /ops/api/.

Pages work with HTTP Basic (the operator key as the password) so a browser can open them; the
static files (Pico CSS, htmx) are vendored in api/static, so the console works offline.
"""

from __future__ import annotations

from pathlib import Path

import falcon

from api.console.bookings import (
    BookingAction,
    BookingLookup,
    BookingLookupJson,
    BookingStory,
    BookingStoryJson,
)
from api.console.dead_letters import DeadLetters, DeadLettersJson
from api.console.events import EventsJson, EventsPage
from api.console.overview import Overview, OverviewJson
from api.console.queues import DelayedJson, Queues, QueuesJson, Workers, WorkersJson
from api.console.webhooks import (
    EndpointDeliveries,
    EndpointDeliveriesJson,
    FailingEndpoints,
    FailingEndpointsJson,
)
from services.context import Context
from tasks.queue_inspection import QueueInspection
from tasks.worker_activity import WorkerRegistry

STATIC = Path(__file__).resolve().parents[1] / "static"


def add_console_routes(
    app: falcon.App[falcon.Request, falcon.Response], ctx: Context, inspector: QueueInspection,
    registry: WorkerRegistry,
) -> None:
    collaborators = (ctx, inspector, registry)
    app.add_route("/ops", Overview(*collaborators))
    app.add_route("/ops/api/overview", OverviewJson(*collaborators))
    app.add_route("/ops/queues", Queues(*collaborators))
    app.add_route("/ops/api/queues", QueuesJson(*collaborators))
    app.add_route("/ops/api/delayed", DelayedJson(*collaborators))
    app.add_route("/ops/workers", Workers(*collaborators))
    app.add_route("/ops/api/workers", WorkersJson(*collaborators))
    app.add_route("/ops/dead", DeadLetters(*collaborators))
    app.add_route("/ops/api/dead", DeadLettersJson(*collaborators))
    app.add_route("/ops/bookings", BookingLookup(*collaborators))
    app.add_route("/ops/api/bookings", BookingLookupJson(*collaborators))
    app.add_route("/ops/bookings/{booking_id:uuid}", BookingStory(*collaborators))
    app.add_route("/ops/api/bookings/{booking_id:uuid}", BookingStoryJson(*collaborators))
    app.add_route("/ops/bookings/{booking_id:uuid}/{action}", BookingAction(*collaborators))
    app.add_route("/ops/events", EventsPage(*collaborators))
    app.add_route("/ops/api/events", EventsJson(*collaborators))
    app.add_route("/ops/webhooks", FailingEndpoints(*collaborators))
    app.add_route("/ops/api/webhooks", FailingEndpointsJson(*collaborators))
    app.add_route("/ops/webhooks/{endpoint_id:uuid}", EndpointDeliveries(*collaborators))
    app.add_route("/ops/api/webhooks/{endpoint_id:uuid}", EndpointDeliveriesJson(*collaborators))
    app.add_static_route("/ops/static", str(STATIC))
