"""What a public API needs around its responders: rate limits and security headers.

Rate limits use the `limits` library on Redis (a sliding window counter), so every gunicorn
worker and every web process share one count; concurrent requests' checks share round trips. Clients are limited per key and route; the
webhook, which has no key, per source address, so a flood of forged events cannot take the
capacity real bookings need. Everything no known key vouches for (no key, a key not yet looked
up, /readyz, /metrics and the other open routes) is limited per address too, and a failed
authentication costs that address several requests: a flood of bad keys is refused before it
reaches the database, while clients with good keys (cached by api.middleware) are not slowed.
A Redis outage fails open: bookings matter more than limits.

The address is the peer's, unless TRUSTED_PROXY_HEADER names a header the proxy in front of
the API sets (such as X-Forwarded-For): then the last address in it, the one that proxy saw.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import falcon
import redis
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from adapters.redis_pipelining import PipelinedRedis
from api.errors import APIError

log = logging.getLogger(__name__)


#: A failed authentication costs its address this many requests of its `anonymous` budget.
FAILED_AUTHENTICATION_COST = 10


@dataclass(frozen=True)
class RateLimits:
    """Per-client limits for writes and reads, per-address limits for the webhook and for
    requests no known key vouches for."""

    writes: str = "50/second"
    reads: str = "200/second"
    webhooks: str = "500/second"
    anonymous: str = "20/second"

    @classmethod
    def parse_spec(cls, spec: str) -> RateLimits:
        """`writes=50/second;reads=200/second;webhooks=500/second;anonymous=20/second` (any subset)."""
        fields = dict(part.split("=", 1) for part in filter(None, (p.strip() for p in spec.split(";"))))
        unknown = set(fields) - {"writes", "reads", "webhooks", "anonymous"}
        if unknown:
            raise ValueError(f"unknown rate limit names: {sorted(unknown)}")
        for value in fields.values():
            parse(value)  # raises on a malformed rate
        return cls(**fields)


def client_address(req: falcon.Request, trusted_header: str = "") -> str:
    """The peer's address, or the last valid address in the trusted proxy's header."""
    if trusted_header:
        entries = (req.get_header(trusted_header) or "").split(",")
        for entry in reversed(entries):
            try:
                return str(ipaddress.ip_address(entry.strip()))
            except ValueError:
                continue
    return req.remote_addr


class _PipelinedStorage(RedisStorage):
    """`limits`' Redis storage on a client whose commands from concurrent requests share round
    trips (`adapters.redis_pipelining`)."""

    def __init__(self, uri: str, client: PipelinedRedis, *, key_prefix: str) -> None:
        self._client = client
        super().__init__(uri, connection_pool=client.connection_pool, key_prefix=key_prefix)

    def get_connection(self, readonly: bool = False) -> Any:
        return self._client


class RateLimiting:
    def __init__(self, redis_url: str, limits: RateLimits, namespace: str, *, address_header: str = "") -> None:
        # A limiter that cannot answer at once lets the request through (below): bounded waits and
        # no retries, so a silent Redis costs a request a quarter of a second (a second at most when
        # it waited for other requests' round trips), not a stall.
        pool = redis.ConnectionPool.from_url(
            redis_url, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0),
        )
        # Concurrent requests' checks share round trips; one waits a second at most for its turn.
        client = PipelinedRedis(connection_pool=pool, wait_timeout=1.0)
        storage = _PipelinedStorage(redis_url, client, key_prefix=f"{namespace}-ratelimit")
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.writes, self.reads, self.webhooks, self.anonymous = (
            parse(r) for r in (limits.writes, limits.reads, limits.webhooks, limits.anonymous)
        )
        self.address_header = address_header

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if resource is None or getattr(resource, "rate_limited", True) is False:
            return
        route = req.uri_template or req.path
        principal = getattr(req.context, "principal", None)
        if principal is not None:
            item = self.writes if req.method in ("POST", "PUT", "PATCH", "DELETE") else self.reads
            self._check(item, f"client:{principal.client_id}", req.method, route)
        elif route.startswith("/v1/webhooks/"):
            self._check(self.webhooks, self._address(req), req.method, route)
        elif getattr(resource, "auth", "client") is None:
            self.admit_anonymous(req)

    def admit_anonymous(self, req: falcon.Request) -> None:
        """One request of the address's budget for what no known key vouches for; 429 past it."""
        self._check(self.anonymous, self._address(req), "anonymous")

    def charge_failed_authentication(self, req: falcon.Request) -> None:
        """The rest of a failed authentication's cost (`admit_anonymous` took one)."""
        try:
            self.limiter.hit(self.anonymous, self._address(req), "anonymous", cost=FAILED_AUTHENTICATION_COST - 1)
        except Exception:  # Redis down: serve rather than refuse
            log.warning("rate limiter unavailable; not limiting", exc_info=True)

    def _address(self, req: falcon.Request) -> str:
        return f"address:{client_address(req, self.address_header)}"

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
