"""The operators' pages: queue depths with dead letters (retry, delete) and the booking flow.

Server-rendered HTML that needs no script, refreshes itself, and works with HTTP Basic (the
operator key as the password); the same figures are served as JSON for tools and tests.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from datetime import datetime
from html import escape

import falcon

from api.errors import APIError
from db.queries.flow import BookingFlow, booking_flow
from services.context import Context
from services.outbox import StagedMessage
from tasks.queue_inspection import QUEUES, DeadLetter, QueueDepth, QueueInspector

#: Options a dead letter picked up on its way to the DLQ; a retry starts afresh without them.
_SPENT_OPTIONS = ("retries", "traceback", "redis_message_id", "requeue_timestamp", "eta", "max_retries")


class OpsPage:
    auth = "operator"
    challenge = "Basic"

    def __init__(self, ctx: Context, inspector: QueueInspector) -> None:
        self.ctx = ctx
        self.inspector = inspector

    def _flow(self) -> BookingFlow:
        with self.ctx.sessions() as session:
            return booking_flow(session, self.ctx.clock())


class QueuesPage(OpsPage):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        depths = self.inspector.depths()
        dead = {d.name: self.inspector.dead_letters(d.name, limit=20) for d in depths if d.dead}
        resp.content_type = falcon.MEDIA_HTML
        resp.text = _page("Queues", _queues_html(depths) + _dead_html(dead, req) + _flow_html(self._flow()))


class QueuesJson(OpsPage):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        flow = self._flow()
        resp.media = {
            "queues": [asdict(d) for d in self.inspector.depths()],
            "dead_letters": {
                name: [{**asdict(letter), "died_at": letter.died_at.isoformat()}
                       for letter in self.inspector.dead_letters(name)]
                for name in QUEUES
            },
            "flow": {
                "by_status": flow.by_status,
                "oldest_requested_at": flow.oldest_requested_at.isoformat() if flow.oldest_requested_at else None,
                "settled_per_minute": [{"minute": at.isoformat(), "count": n} for at, n in flow.settled_per_minute],
                "webhook_backlog": flow.webhook_backlog,
                "outbox_backlog": flow.outbox_backlog,
            },
        }


class DeadLetterAction(OpsPage):
    """POST /ops/queues/{queue}/dead/{redis_id}/{action}: retry or delete one dead letter."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, queue: str, redis_id: str, action: str) -> None:
        form = req.get_media(default_when_empty={})  # the page's forms post urlencoded fields
        if queue not in QUEUES or action not in ("retry", "delete"):
            raise APIError(falcon.HTTP_404, "not_found", "no such queue or action")
        if not hmac.compare_digest(str(form.get("token", "")), csrf_token(req, queue, redis_id, action)):
            raise APIError(falcon.HTTP_403, "forbidden", "the form token does not match")
        message = self.inspector.take_dead_letter(queue, redis_id)
        if message is None:
            raise APIError(falcon.HTTP_404, "not_found", "no such dead letter")
        if action == "retry":
            options = {k: v for k, v in (message.get("options") or {}).items() if k not in _SPENT_OPTIONS}
            self.ctx.dispatch([StagedMessage(
                message["message_id"], message["queue_name"], message["actor_name"],
                tuple(message.get("args") or ()), options,
            )])
        raise falcon.HTTPSeeOther("/ops/queues")


def csrf_token(req: falcon.Request, queue: str, redis_id: str, action: str) -> str:
    """Binds a form to the operator's key: another site cannot forge it, even with Basic auth."""
    return hmac.new(req.context.key_digest, f"{queue}/{redis_id}/{action}".encode(), "sha256").hexdigest()


def _page(title: str, body: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5"><title>{escape(title)} · bookings ops</title>
<style>body{{font:14px system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin:1rem 0}}
th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}th:first-child,td:first-child{{text-align:left}}
.dead{{color:#b00;font-weight:bold}}form{{display:inline}}code{{font-size:12px}}</style></head>
<body><h1>{escape(title)}</h1>{body}</body></html>"""


def _queues_html(depths: list[QueueDepth]) -> str:
    rows = "".join(
        f"<tr><td>{escape(d.name)}</td><td>{d.ready}</td><td>{d.delayed}</td><td>{d.in_flight}</td>"
        f"<td class='{'dead' if d.dead else ''}'>{d.dead}</td></tr>"
        for d in depths
    )
    return ("<table id='queues'><tr><th>queue</th><th>ready</th><th>delayed</th><th>in flight</th>"
            f"<th>dead-lettered</th></tr>{rows}</table>")


def _dead_html(dead: dict[str, list[DeadLetter]], req: falcon.Request) -> str:
    if not dead:
        return "<p>No dead-lettered messages.</p>"
    rows = []
    for queue, letters in dead.items():
        for letter in letters:
            buttons = "".join(
                f"<form method='post' action='/ops/queues/{escape(queue)}/dead/{escape(letter.redis_id)}/{action}'>"
                f"<input type='hidden' name='token' value='{csrf_token(req, queue, letter.redis_id, action)}'>"
                f"<button>{action}</button></form> "
                for action in ("retry", "delete")
            )
            rows.append(
                f"<tr><td>{escape(queue)}</td><td>{escape(letter.actor)}</td>"
                f"<td><code>{escape(', '.join(map(str, letter.args)))}</code></td><td>{letter.retries}</td>"
                f"<td>{_time(letter.died_at)}</td><td><code>{escape(letter.error)}</code></td><td>{buttons}</td></tr>"
            )
    return ("<h2>Dead letters</h2><table id='dead-letters'><tr><th>queue</th><th>actor</th><th>args</th>"
            f"<th>retries</th><th>died</th><th>error</th><th></th></tr>{''.join(rows)}</table>")


def _flow_html(flow: BookingFlow) -> str:
    statuses = "".join(f"<tr><td>{escape(s)}</td><td>{n}</td></tr>" for s, n in sorted(flow.by_status.items()))
    per_minute = "".join(f"<tr><td>{_time(at)}</td><td>{n}</td></tr>" for at, n in flow.settled_per_minute)
    return (
        "<h2>Booking flow</h2>"
        f"<table id='by-status'><tr><th>status</th><th>bookings</th></tr>{statuses}</table>"
        f"<p>Oldest booking still requested: {_time(flow.oldest_requested_at)}. "
        f"Webhook events not yet applied: {flow.webhook_backlog}. Outbox messages pending: {flow.outbox_backlog}.</p>"
        f"<table id='settled'><tr><th>minute</th><th>settled</th></tr>{per_minute}</table>"
    )


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "none"
