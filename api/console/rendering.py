"""Jinja2 templates for the console pages, their filters, and the overview's chart as inline SVG."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

import falcon
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

NAV = (
    ("/ops/", "Overview"), ("/ops/queues", "Queues"), ("/ops/workers", "Workers"),
    ("/ops/dead", "Dead letters"), ("/ops/bookings", "Bookings"), ("/ops/events", "Events"),
    ("/ops/webhooks", "Webhooks"),
)


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("api", "templates"), autoescape=select_autoescape(default=True))
    env.filters.update(when=when, seconds=seconds, money=money)
    env.globals.update(nav=NAV)
    return env


def render(req: falcon.Request, resp: falcon.Response, template: str, **data: Any) -> None:
    resp.content_type = falcon.MEDIA_HTML
    resp.text = environment().get_template(template).render(
        path=req.path or "/ops/", csrf=form_token(req, "console"), **data
    )


def form_token(req: falcon.Request, purpose: str) -> str:
    """Binds a form to the operator's key: another site cannot forge it, even with Basic auth."""
    return hmac.new(req.context.key_digest, purpose.encode(), hashlib.sha256).hexdigest()


def check_form_token(req: falcon.Request, form: dict[str, Any], purpose: str = "console") -> bool:
    return hmac.compare_digest(str(form.get("token", "")), form_token(req, purpose))


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.0f} min" if value < 7200 else f"{value / 3600:.1f} h"


def money(amount: int | None, currency: str = "") -> str:
    return "—" if amount is None else f"{amount / 100:,.2f} {currency.upper()}".strip()


#: The chart's series, bottom to top: what an operator scans for is red on top.
SERIES = (("done", "processed", "#2e7d32"), ("retrying", "retried", "#ef8f00"), ("dead_lettered", "failed", "#c62828"))


def rate_chart(minutes: Sequence[Any], *, width: int = 720, height: int = 160) -> Markup:
    """Stacked bars, one per minute, of messages per second by outcome; hover shows the figures."""
    peak = max((sum(getattr(m, key) for key, _, _ in SERIES) for m in minutes), default=0) or 1
    bar = width / max(len(minutes), 1)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 16}" role="img" '
             f'aria-label="messages per second, last hour">']
    for i, minute in enumerate(minutes):
        y = float(height)
        for key, label, colour in SERIES:
            count = getattr(minute, key)
            if not count:
                continue
            h = count / peak * height
            y -= h
            title = f"{minute.minute:%H:%M} {label} {count / 60:.2f}/s ({count})"
            parts.append(f'<rect x="{i * bar:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{escape(title)}</title></rect>')
    parts.append(f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#999"/>')
    if minutes:
        parts.append(f'<text x="0" y="{height + 13}" font-size="11">{minutes[0].minute:%H:%M}</text>')
        parts.append(f'<text x="{width}" y="{height + 13}" font-size="11" text-anchor="end">'
                     f'{minutes[-1].minute:%H:%M}</text>')
    parts.append(f'<text x="4" y="12" font-size="11">peak {peak / 60:.2f}/s</text></svg>')
    return Markup("".join(parts))
