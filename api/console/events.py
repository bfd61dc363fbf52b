"""Event sales: per event capacity, seats held and sold, and revenue."""

from __future__ import annotations

from typing import Any

import falcon

from api.console.base import ConsolePage
from api.console.rendering import render
from db.queries.sales import event_sales


class EventsPage(ConsolePage):
    def data(self) -> dict[str, Any]:
        with self.ctx.sessions() as session:
            # CANCELLATION PROGRESS: when events can be cancelled, each event's cancellation
            # (bookings still to cancel, refunds pending) joins these figures here.
            return {"events": event_sales(session)}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(req, resp, "events.html", at=self.ctx.clock(), **self.data())


class EventsJson(EventsPage):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.data()
