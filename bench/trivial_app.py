"""The HTTP ceiling for bench.api_accept: Falcon routes doing (almost) nothing, served by the same
gunicorn command as the API: `gunicorn 'bench.trivial_app:create()' ...`.

- `POST /trivial`: reads the body, answers 202 with a small JSON document;
- `POST /enqueue`: the same, plus one Dramatiq message sent to Redis (the broker the API uses,
  to a queue nobody consumes): what a route that only enqueues costs.
"""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import falcon


class Trivial:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.bounded_stream.read()
        resp.status = falcon.HTTP_202
        resp.media = {"id": str(uuid.uuid4()), "status": "requested"}


class Enqueue:
    def __init__(self, broker: Any) -> None:
        self.broker = broker

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.bounded_stream.read()
        message_id = str(uuid.uuid4())
        self.broker.enqueue(dramatiq.Message(queue_name="bench-trivial", actor_name="nobody", args=(message_id,),
                                             kwargs={}, options={}, message_id=message_id))
        resp.status = falcon.HTTP_202
        resp.media = {"id": message_id, "status": "requested"}


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


def create() -> falcon.App:
    from config.settings import Settings
    from tasks.broker import make_broker

    app = falcon.App()
    app.add_route("/trivial", Trivial())
    app.add_route("/enqueue", Enqueue(make_broker(Settings.from_env())))
    app.add_route("/healthz", Health())
    return app
