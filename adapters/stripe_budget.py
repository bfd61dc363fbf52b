"""A budget of requests per second to Stripe, shared by every worker process through Redis.

Stripe answers 429 past its rate limit (100 requests per second in live mode, 25 in test mode).
An event cancellation stages thousands of refunds and voids at once, and every worker thread
would otherwise call Stripe as fast as it can. So every request the SDK sends (its own retries
included) first takes its turn in a moving one-second window kept in Redis by `limits`, the
library the API's rate limits use: all worker processes together stay within
STRIPE_MAX_REQUESTS_PER_SECOND.

When Stripe answers 429 all the same (another service on the account, a lower limit than
configured), every worker pauses: the pause is a Redis key they all look at, and it doubles
(with jitter) while 429s keep coming, so one refusal does not become a storm of them. A request
that cannot get its turn within `max_wait` is not sent: the step's claim is released and the
message retried later with Dramatiq's exponential, jittered backoff, like any Stripe outage.

A Redis outage lets requests through: Stripe's own 429 and the retries are the backstop.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis
import stripe
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from domain.errors import PaymentProviderRateLimited

log = logging.getLogger(__name__)

#: The first pause after a 429, doubled for each further 429 within `STRIKES_FORGOTTEN_AFTER`.
FIRST_PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 30.0
STRIKES_FORGOTTEN_AFTER = 60


class StripeRequestBudget:
    def __init__(
        self, redis_url: str, per_second: int, namespace: str, *, max_wait: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Bounded waits and no retries: a silent Redis costs a request a quarter of a second.
        pool = redis.ConnectionPool.from_url(
            redis_url, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0),
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._limiter = MovingWindowRateLimiter(
            RedisStorage(redis_url, connection_pool=pool, key_prefix=f"{namespace}-stripe-budget")
        )
        self._item = RateLimitItemPerSecond(per_second)
        self._paused, self._strikes = f"{namespace}-stripe-budget:paused", f"{namespace}-stripe-budget:strikes"
        self.max_wait = max_wait
        self._sleep = sleep

    def take(self) -> None:
        """Wait for a request's turn; PaymentProviderRateLimited if it does not come within `max_wait`."""
        deadline = time.monotonic() + self.max_wait
        while True:
            try:
                wait = self._wait_needed()
            except redis.RedisError:
                log.warning("Stripe request budget unavailable; not pacing", exc_info=True)
                return
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise PaymentProviderRateLimited(f"Stripe's request budget is spent for the next {wait:.1f} s")
            # Jittered, so the threads that wait do not all wake at the same instant.
            self._sleep(wait * random.uniform(1.0, 1.5))

    def _wait_needed(self) -> float:
        paused_ms = cast(int, self._redis.pttl(self._paused))
        if paused_ms > 0:
            return paused_ms / 1000
        if self._limiter.hit(self._item, "requests"):
            return 0.0
        reset_at, _ = self._limiter.get_window_stats(self._item, "requests")
        return max(0.005, float(reset_at) - time.time())

    def pause_after_refusal(self) -> float:
        """Stripe answered 429: pause every worker, longer for each 429 in a row; returns the pause
        (0 when one was already in force, which this 429 was a part of)."""
        try:
            strikes = int(cast(bytes | None, self._redis.get(self._strikes)) or 0)
            pause = float(min(MAX_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2**strikes) * random.uniform(0.5, 1.0))
            if not self._redis.set(self._paused, "1", px=max(1, int(pause * 1000)), nx=True):
                return 0.0
            with self._redis.pipeline() as pipe:
                pipe.incr(self._strikes)
                pipe.expire(self._strikes, STRIKES_FORGOTTEN_AFTER)
                pipe.execute()
        except redis.RedisError:
            log.warning("Stripe request budget unavailable; not pausing", exc_info=True)
            return 0.0
        log.warning("Stripe answered 429: every worker pauses its Stripe requests for %.2f s", pause)
        return pause

    def close(self) -> None:
        self._redis.close()


class BudgetedHTTPClient(stripe.HTTPXClient):
    """The SDK's HTTP client, taking each request's turn from the shared budget first."""

    def __init__(self, budget: StripeRequestBudget, **options: Any) -> None:
        super().__init__(**options)
        self.budget = budget

    # HTTPXClient's own signature, which differs from the base class's annotation.
    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        self.budget.take()
        answer = super().request(method, url, headers, post_data)
        if answer[1] == 429:
            self.budget.pause_after_refusal()
        return answer
