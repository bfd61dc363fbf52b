"""POST /v1/webhooks/stripe: verify the signature, parse, hand the event to the ledger, answer."""

from __future__ import annotations

import logging
import re
from typing import Any

import falcon
import orjson
import stripe
from sqlalchemy.exc import SQLAlchemyError

from api.errors import APIError
from api.metrics import count_rejected_event
from api.stripe_events import MAX_NESTING, nests_deeper_than, shape_problem
from services.context import Context
from services.webhooks import receive

log = logging.getLogger(__name__)

#: Stripe's own default: a signature older than this is a replay.
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_EVENT_BYTES = 512 * 1024
EVENT_ID = re.compile(r"^evt_[A-Za-z0-9_]{1,250}$")


class StripeWebhook:
    auth = None  # authenticated by the Stripe-Signature header instead of an API key

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        payload = self._verified_event(req)
        problem = shape_problem(payload)
        try:
            recorded = receive(self.ctx, payload, rejected_because=problem)
        except SQLAlchemyError:
            log.exception("webhook ledger write failed", extra={"event_id": payload["id"]})
            # A 5xx makes Stripe deliver the event again later.
            raise APIError(falcon.HTTP_500, "ledger_unavailable", "the event could not be recorded") from None
        resp.media = {"received": True, "duplicate": not recorded}
        if problem is not None:
            # 200 all the same: Stripe would retry an error for days, and the event would not change.
            log.warning("webhook %s rejected: %s", payload["id"], problem)
            count_rejected_event(str(payload["type"]))
            resp.media["rejected"] = problem

    def _verified_event(self, req: falcon.Request) -> dict[str, Any]:
        if req.content_length is not None and req.content_length > MAX_EVENT_BYTES:
            raise APIError(falcon.HTTP_413, "payload_too_large", "the event is too large")
        raw = req.bounded_stream.read(MAX_EVENT_BYTES + 1)
        if len(raw) > MAX_EVENT_BYTES:
            raise APIError(falcon.HTTP_413, "payload_too_large", "the event is too large")
        try:
            stripe.WebhookSignature.verify_header(
                raw.decode("utf-8"), req.get_header("Stripe-Signature"),
                self.ctx.settings.stripe_webhook_secret, SIGNATURE_TOLERANCE_SECONDS,
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            raise APIError(falcon.HTTP_400, "invalid_signature", "the Stripe-Signature does not verify") from None
        try:
            # The same parser as the ledger's serializer: what it cannot hold (NaN, integers past
            # 64 bits) is refused here, not turned into a 500 or silently changed on the way in.
            payload = orjson.loads(raw)
        except ValueError:
            raise APIError(falcon.HTTP_400, "malformed_json", "the event is not valid JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str) or not (
            isinstance(payload.get("id"), str) and EVENT_ID.match(payload["id"])
        ):
            raise APIError(falcon.HTTP_400, "invalid_event", "the event needs an evt_ id and a type")
        if nests_deeper_than(raw, MAX_NESTING):
            # The ledger's JSON writer (orjson) refuses some 255 levels: a bound well short of it.
            raise APIError(falcon.HTTP_400, "invalid_payload", f"the event nests deeper than {MAX_NESTING} levels")
        if b"\\u0000" in raw:
            # PostgreSQL's jsonb cannot store NUL; refuse it here rather than fail the ledger (a 500
            # that Stripe would retry for days).
            raise APIError(falcon.HTTP_400, "invalid_event", "the event contains a NUL character")
        return payload
