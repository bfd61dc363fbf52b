"""What the local Stripe server lacks and this service uses, added the way Stripe behaves.

1. Confirming a PaymentIntent with a `payment_method` (localstripe answers 500 "Not
   implemented"): the front end of mode `client`, and a retry with a new card, do exactly that.
2. A declined confirmation's error names its PaymentIntent (`error.payment_intent`), as Stripe's
   does, so a retry confirms that intent instead of creating another.
3. A minimal Checkout Session resource (localstripe has none). It stores sessions in memory and
   answers create, retrieve and expire with the fields this service reads (`id`, `url`,
   `status`, `payment_status`, `payment_intent`, `amount_total`, `metadata`). There is no hosted
   page: tests play the customer by creating the PaymentIntent, completing the session with it
   (`POST /v1/checkout/sessions/{id}/_complete`, ours alone) and sending a signed
   `checkout.session.completed` event themselves.
4. Disputes (localstripe has none): retrieve and close as Stripe's, and two routes of ours that
   play the bank (`POST /v1/charges/{id}/_dispute` opens one, `POST /v1/disputes/{id}/_resolve`
   decides it), so tests drive `charge.dispute.*` through the real SDK's retrieve.
5. Stripe's refusals that tests must provoke: refunding more than a charge's unrefunded amount,
   refunding a charge with an open or lost dispute
   (400 `charge_disputed`, as Stripe answers), and its rate limit: `POST /_config/rate_limit` with
   `count=N` (ours alone) makes the next N API requests answer 429 `rate_limit`, as Stripe does
   past its limit; `GET /_config/rate_limit` tells how many were refused and served since.
   Disputes are also listed by `payment_intent`, as Stripe's `GET /v1/disputes` does.
6. Listing a type from an index instead of scanning the whole store: upstream's lists (and each
   charge's refunds, which every PaymentIntent answer includes) scan every object, so creating an
   intent got four times slower after two thousand (82% of its time in that scan, profiled).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from localstripe import resources, server

_CONFIRM = re.compile(r"^/v1/payment_intents/(pi_[A-Za-z0-9]+)/confirm$")


@web.middleware
async def confirm_with_payment_method(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    match = _CONFIRM.match(request.path)
    if request.method != "POST" or match is None:
        return await handler(request)
    data = await server.get_post_data(request) or {}
    payment_method = data.get("payment_method")
    if not payment_method:
        return await handler(request)
    intent = resources.PaymentIntent._api_retrieve(match.group(1))
    if intent.status not in ("requires_payment_method", "requires_confirmation"):
        raise resources.UserError(400, f"This PaymentIntent's status is {intent.status}")
    resources.PaymentMethod._api_retrieve(payment_method)  # 404 for an unknown method
    # Like Stripe: the new method replaces a declined one and a new charge is attempted.
    intent.payment_method, intent.latest_charge, intent.next_action = payment_method, None, None
    intent._confirm(on_failure_now=intent._report_failure)
    response: web.StreamResponse = server.json_response(intent._export())
    return response

_sessions: dict[str, dict[str, Any]] = {}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"type": "invalid_request_error", "message": message}}, status=status)


async def create_session(request: web.Request) -> web.Response:
    form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
    amount = form.get("line_items[0][price_data][unit_amount]")
    currency = form.get("line_items[0][price_data][currency]")
    if not amount or not currency or form.get("mode") != "payment":
        return _error(400, "mode=payment with one priced line item is required")
    session_id = "cs_test_" + secrets.token_hex(12)
    session = {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "url": f"http://{request.host}/checkout/{session_id}",
        "status": "open",
        "payment_status": "unpaid",
        "payment_intent": None,
        "amount_total": int(amount),
        "currency": currency,
        "client_reference_id": form.get("client_reference_id"),
        "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
        "expires_at": int(form.get("expires_at") or time.time() + 86400),
        "success_url": form.get("success_url"),
        "cancel_url": form.get("cancel_url"),
        "livemode": False,
    }
    _sessions[session_id] = session
    return web.json_response(session)


async def retrieve_session(request: web.Request) -> web.Response:
    session = _sessions.get(request.match_info["id"])
    return web.json_response(session) if session else _error(404, "No such checkout.session")


async def expire_session(request: web.Request) -> web.Response:
    session = _sessions.get(request.match_info["id"])
    if session is None:
        return _error(404, "No such checkout.session")
    if session["status"] != "open":
        return _error(400, f"This Checkout Session is {session['status']}")
    session["status"] = "expired"
    return web.json_response(session)


async def complete_session(request: web.Request) -> web.Response:
    """Plays the customer on the hosted page (not a Stripe route): the session completes with the
    PaymentIntent the test made for it, paid once that intent has captured."""
    session = _sessions.get(request.match_info["id"])
    if session is None:
        return _error(404, "No such checkout.session")
    if session["status"] != "open":
        return _error(400, f"This Checkout Session is {session['status']}")
    form = dict(parse_qsl((await request.read()).decode()))
    intent = resources.PaymentIntent._api_retrieve(form.get("payment_intent", ""))
    session["status"], session["payment_intent"] = "complete", intent.id
    session["payment_status"] = "paid" if intent.status == "succeeded" else "unpaid"
    return web.json_response(session)


_disputes: dict[str, dict[str, Any]] = {}

#: Where a dispute leaves the charge's money with the bank: Stripe refuses to refund it.
_REFUND_REFUSED = ("warning_needs_response", "warning_under_review", "needs_response", "under_review", "lost")
_REFUNDS = "/v1/refunds"


@web.middleware
async def refuse_refunds_of_disputed_charges(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.method != "POST" or request.path != _REFUNDS:
        return await handler(request)
    form = dict(parse_qsl((await request.read()).decode()))
    charge = form.get("charge")
    if charge is None and form.get("payment_intent"):
        latest = resources.PaymentIntent._api_retrieve(form["payment_intent"]).latest_charge
        charge = getattr(latest, "id", latest)
    if any(d["charge"] == charge and d["status"] in _REFUND_REFUSED for d in _disputes.values()):
        return web.json_response({"error": {
            "type": "invalid_request_error", "code": "charge_disputed",
            "message": f"Charge {charge} has been charged back; cannot issue a refund.",
        }}, status=400)
    over = _over_refund(charge, form.get("amount"))
    if over is not None:
        return web.json_response({"error": over}, status=400)
    return await handler(request)


def _over_refund(charge: str | None, amount: str | None) -> dict[str, Any] | None:
    """Stripe never refunds more than a charge's unrefunded amount (the local server would): a
    refund raced by another, from the dashboard say, is refused as Stripe refuses it."""
    try:
        found = resources.Charge._api_retrieve(charge) if charge else None
    except resources.UserError:
        return None  # no such charge: the local server's own answer
    if found is None:
        return None
    left = found.amount - found.amount_refunded
    if left <= 0:
        return {"type": "invalid_request_error", "code": "charge_already_refunded",
                "message": f"Charge {charge} has already been refunded."}
    if amount is not None and amount.isdigit() and int(amount) > left:
        return {"type": "invalid_request_error", "param": "amount",
                "message": f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})."}
    return None


async def list_disputes(request: web.Request) -> web.Response:
    intent = request.query.get("payment_intent")
    found = sorted((d for d in _disputes.values() if intent is None or d["payment_intent"] == intent),
                   key=lambda d: d["created"], reverse=True)
    return web.json_response({"object": "list", "url": "/v1/disputes", "has_more": False, "data": found})


class _RateLimit:
    """The next `left` API requests are refused with 429; counts kept for the tests to read."""

    left = 0
    refused = 0
    served = 0


@web.middleware
async def rate_limit(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    if _RateLimit.left > 0:
        _RateLimit.left -= 1
        _RateLimit.refused += 1
        return web.json_response({"error": {
            "type": "invalid_request_error", "code": "rate_limit",
            "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        }}, status=429)
    _RateLimit.served += 1
    return await handler(request)


async def configure_rate_limit(request: web.Request) -> web.Response:
    if request.method == "POST":
        form = dict(parse_qsl((await request.read()).decode()))
        _RateLimit.left = int(form.get("count") or 0)
        _RateLimit.refused = _RateLimit.served = 0
    return web.json_response({"left": _RateLimit.left, "refused": _RateLimit.refused, "served": _RateLimit.served})


async def open_dispute(request: web.Request) -> web.Response:
    """Plays the customer's bank (not a Stripe route): a dispute of the charge, needing a response."""
    charge = resources.Charge._api_retrieve(request.match_info["id"])
    form = dict(parse_qsl((await request.read()).decode()))
    dispute_id = "dp_" + secrets.token_hex(12)
    _disputes[dispute_id] = {
        "id": dispute_id, "object": "dispute", "charge": charge.id, "payment_intent": charge.payment_intent,
        "amount": int(form.get("amount") or charge.amount), "currency": charge.currency,
        "reason": form.get("reason", "fraudulent"), "status": "needs_response",
        "created": int(time.time()), "livemode": False,
    }
    return web.json_response(_disputes[dispute_id])


async def retrieve_dispute(request: web.Request) -> web.Response:
    dispute = _disputes.get(request.match_info["id"])
    return web.json_response(dispute) if dispute else _error(404, "No such dispute")


async def close_dispute(request: web.Request) -> web.Response:
    """As Stripe's: closing a dispute accepts it, and the dispute is lost."""
    return _set_dispute_status(request.match_info["id"], "lost")


async def resolve_dispute(request: web.Request) -> web.Response:
    """Plays the bank's decision (not a Stripe route): won, lost, or under review."""
    form = dict(parse_qsl((await request.read()).decode()))
    return _set_dispute_status(request.match_info["id"], form.get("status", "won"))


def _set_dispute_status(dispute_id: str, status: str) -> web.Response:
    dispute = _disputes.get(dispute_id)
    if dispute is None:
        return _error(404, "No such dispute")
    if dispute["status"] in ("won", "lost"):
        return _error(400, f"This dispute is already {dispute['status']}")
    dispute["status"] = status
    return web.json_response(dispute)


def _decline_names_the_intent() -> None:
    report_failure = resources.PaymentIntent._report_failure

    def _report_failure(self: Any) -> None:
        try:
            report_failure(self)
        except resources.UserError as error:
            error.body["error"]["payment_intent"] = self._export()
            raise

    resources.PaymentIntent._report_failure = _report_failure


def _index_store_by_type() -> None:
    by_type: dict[str, dict[str, Any]] = {}
    set_item, del_item = dict.__setitem__, dict.__delitem__

    def __setitem__(store: Any, key: str, value: Any) -> None:
        set_item(store, key, value)
        by_type.setdefault(key.split(":", 1)[0], {})[key] = value

    def __delitem__(store: Any, key: str) -> None:
        del_item(store, key)
        by_type.get(key.split(":", 1)[0], {}).pop(key, None)

    @classmethod  # type: ignore[misc]
    def _api_list_all(cls: Any, url: str, limit: Any = None, starting_after: Any = None, **kwargs: Any) -> Any:
        if kwargs:
            raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        listing = resources.List(url, limit=limit, starting_after=starting_after)
        listing._list = list(by_type.get(cls.object, {}).values())
        return listing

    for key, value in resources.store.items():
        by_type.setdefault(key.split(":", 1)[0], {})[key] = value
    resources.Store.__setitem__ = __setitem__
    resources.Store.__delitem__ = __delitem__
    resources.StripeObject._api_list_all = _api_list_all


def install(app: web.Application) -> None:
    _index_store_by_type()
    _decline_names_the_intent()
    # Innermost, so localstripe's own middleware turns a UserError into Stripe's error body.
    app.middlewares.append(confirm_with_payment_method)
    app.middlewares.append(refuse_refunds_of_disputed_charges)
    # Outermost: a refused request reaches nothing, not even the idempotency keys (Stripe does not
    # save a 429 under its key either).
    app.middlewares.insert(0, rate_limit)
    app.router.add_post("/_config/rate_limit", configure_rate_limit)
    app.router.add_get("/_config/rate_limit", configure_rate_limit)
    app.router.add_get("/v1/disputes", list_disputes)
    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
    app.router.add_post("/v1/checkout/sessions/{id}/expire", expire_session)
    app.router.add_post("/v1/checkout/sessions/{id}/_complete", complete_session)
    app.router.add_post("/v1/charges/{id}/_dispute", open_dispute)
    app.router.add_get("/v1/disputes/{id}", retrieve_dispute)
    app.router.add_post("/v1/disputes/{id}/close", close_dispute)
    app.router.add_post("/v1/disputes/{id}/_resolve", resolve_dispute)
