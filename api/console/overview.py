"""The overview: message rates over the last hour, queues at a glance, and the booking flow."""

from __future__ import annotations

from typing import Any

import falcon

from api.console.base import ConsolePage
from api.console.rendering import rate_chart, render
from db.queries.flow import booking_flow


class Overview(ConsolePage):
    def data(self) -> dict[str, Any]:
        now = self.ctx.clock()
        with self.ctx.sessions() as session:
            flow = booking_flow(session, now)
        minutes = self.registry.outcomes_per_minute(now)
        workers = self.registry.live_workers()
        return {
            "at": now,
            "per_minute": minutes,
            "last_hour": {key: sum(getattr(m, key) for m in minutes) for key in ("done", "retrying", "dead_lettered")},
            "queues": self.inspector.depths(now=now),
            "workers": {"processes": len(workers), "threads": sum(w["threads"] for w in workers),
                        "busy": sum(w["busy"] for w in workers)},
            "flow": flow,
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = self.data()
        render(req, resp, "overview.html", chart=rate_chart(data["per_minute"]), **data)


class OverviewJson(Overview):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.data()
