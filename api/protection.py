"""What a public API needs around its responders: rate limits and security headers.

Rate limits use the `limits` library on Redis (a sliding window counter), so every gunicorn
worker and every web process share one count. Clients are limited per key and route; the
webhook, which has no key, per source address, so a flood of forged events cannot take the
capacity real bookings need. A Redis outage fails open: bookings matter more than limits.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import falcon
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from api.errors import APIError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLimits:
    """Per-client limits for writes and reads, and per-address limits for the webhook."""

    writes: str = "50/second"
    reads: str = "200/second"
    webhooks: str = "500/second"

    @classmethod
    def parse_spec(cls, spec: str) -> RateLimits:
        """`writes=50/second;reads=200/second;webhooks=500/second` (any subset)."""
        fields = dict(part.split("=", 1) for part in filter(None, (p.strip() for p in spec.split(";"))))
        unknown = set(fields) - {"writes", "reads", "webhooks"}
        if unknown:
            raise ValueError(f"unknown rate limit names: {sorted(unknown)}")
        for value in fields.values():
            parse(value)  # raises on a malformed rate
        return cls(**fields)


class RateLimiting:
    def __init__(self, redis_url: str, limits: RateLimits, namespace: str) -> None:
        self.limiter = SlidingWindowCounterRateLimiter(RedisStorage(redis_url, key_prefix=f"{namespace}-ratelimit"))
        self.writes, self.reads, self.webhooks = (parse(r) for r in (limits.writes, limits.reads, limits.webhooks))

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if resource is None or getattr(resource, "rate_limited", True) is False:
            return
        route = req.uri_template or req.path
        principal = getattr(req.context, "principal", None)
        if principal is not None:
            item = self.writes if req.method in ("POST", "PUT", "PATCH", "DELETE") else self.reads
            identity = f"client:{principal.client_id}"
        elif route.startswith("/v1/webhooks/"):
            item, identity = self.webhooks, f"address:{req.remote_addr}"
        else:
            return
        self._check(item, identity, req.method, route)

    def _check(self, item: RateLimitItem, *identity: str) -> None:
        try:
            if self.limiter.hit(item, *identity):
                return
            reset_at, _ = self.limiter.get_window_stats(item, *identity)
        except Exception:  # Redis down: serve rather than refuse
            log.warning("rate limiter unavailable; not limiting", exc_info=True)
            return
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise APIError(
            falcon.HTTP_429, "rate_limited", f"too many requests: the limit is {item}",
            details={"limit": str(item)}, headers={"Retry-After": str(retry_after)},
        )


class SecurityHeaders:
    """Headers every answer carries; HTML pages also get a content security policy."""

    def __init__(self, *, hsts: bool) -> None:
        self.hsts = hsts

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("X-Frame-Options", "DENY")
        resp.set_header("Referrer-Policy", "no-referrer")
        if not req.path.startswith("/docs/static"):
            resp.set_header("Cache-Control", "no-store")
        if (resp.content_type or "").startswith("text/html"):
            # Swagger UI starts from one inline script; nothing is loaded from elsewhere.
            resp.set_header(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
                " img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
            )
        if self.hsts:
            resp.set_header("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
