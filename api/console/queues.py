"""Queues (depth, latency, delayed and retrying messages) and the live worker processes."""

from __future__ import annotations

from typing import Any

import falcon

from api.console.base import ConsolePage
from api.console.rendering import render
from tasks.queue_inspection import QUEUES


def public_worker(entry: dict[str, Any]) -> dict[str, Any]:
    fields = ("host", "pid", "queues", "threads", "busy", "heartbeat_at", "current")
    return {name: entry[name] for name in fields}


class Queues(ConsolePage):
    def data(self) -> dict[str, Any]:
        return {
            "queues": self.inspector.depths(now=self.ctx.clock()),
            "workers": [public_worker(w) for w in self.registry.live_workers()],
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        delayed = [m for name in QUEUES for m in self.inspector.delayed_messages(name, limit=50)]
        render(req, resp, "queues.html", at=self.ctx.clock(), delayed=delayed, **self.data())


class QueuesJson(Queues):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.data()


class DelayedJson(ConsolePage):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"delayed": [m for name in QUEUES for m in self.inspector.delayed_messages(name, limit=100)]}


class Workers(ConsolePage):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(req, resp, "workers.html", at=self.ctx.clock(),
               workers=[public_worker(w) for w in self.registry.live_workers()])


class WorkersJson(ConsolePage):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"workers": [public_worker(w) for w in self.registry.live_workers()]}
