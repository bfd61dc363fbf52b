"""Where Stripe's hosted checkout sends the customer back (`CHECKOUT_RETURN_URL`'s default).

A front end usually has its own page for this; the service ships a minimal one so that the default
works: it says how the booking stands and polls until it settles. It shows the status alone (no
amounts, no customer, no secrets): anyone holding the booking's id, which only the customer's own
redirect carries, sees whether it is paid.
"""

from __future__ import annotations

import uuid

import falcon

from api.errors import APIError
from db.models import Booking
from services.context import Context

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Your booking</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2933}
h1{font-size:1.4rem}#status{font-weight:600}</style></head>
<body><h1>Your booking</h1><p>Status: <span id="status">checking…</span></p>
<p id="hint">This page updates by itself; you may close it at any time.</p>
<script>
const params = new URLSearchParams(location.search);
const words = {requested: "being placed", awaiting_payment: "waiting for your payment",
  authorized: "payment authorized", confirmed: "confirmed", rejected: "not possible",
  expired: "expired", cancelled: "cancelled", refunded: "refunded"};
const settled = ["authorized", "confirmed", "rejected", "expired", "cancelled", "refunded"];
async function look() {
  const answer = await fetch("status?booking_id=" + encodeURIComponent(params.get("booking_id") || ""));
  const body = await answer.json();
  const status = body.status || "unknown";
  document.getElementById("status").textContent = words[status] || status;
  if (!settled.includes(status) && answer.ok) setTimeout(look, 2000);
}
look();
</script></body></html>
"""


class CheckoutReturnPage:
    auth = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = _PAGE


class CheckoutReturnStatus:
    auth = None

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            booking_id = uuid.UUID(req.get_param("booking_id") or "")
        except ValueError:
            raise APIError(falcon.HTTP_400, "invalid_query", "booking_id must be a booking's id") from None
        with self.ctx.sessions() as session:
            status = session.get(Booking, booking_id)
        if status is None:
            raise APIError(falcon.HTTP_404, "not_found", "no such booking")
        resp.media = {"status": status.status}
        resp.set_header("Cache-Control", "no-store")
