"""A budget of requests per second to Stripe, shared by every worker process through Redis.

Stripe answers 429 past its rate limit (100 requests per second in live mode, 25 in test mode).
An event cancellation stages thousands of refunds and voids at once, and every worker thread
would otherwise call Stripe as fast as it can. So every request the SDK sends (its own retries
included) first reserves a turn: the turns are spaced 1/STRIPE_MAX_REQUESTS_PER_SECOND apart, for
all worker processes together, and handed out in the order they are asked for (the generic cell
rate algorithm: one Redis key holds when the next turn is free, moved on atomically by a short
Lua script on Redis's own clock). A thread then sleeps until its turn.

`limits`, which the API's rate limits use, answers only "now, or not now": the threads that are
told "not now" poll and race for the next free moment, and some lose again and again (at 25
requests per second with 16 threads, 116 of 500 bookings gave up waiting and were retried, where
a queue of 16 turns is 0.64 s long). A reservation has no such losers.

When Stripe answers 429 all the same (another service on the account, a lower limit than
configured), every worker pauses: no turn is handed out before the pause ends, and the pause
doubles (with jitter) while 429s keep coming, so one refusal does not become a storm of them. A
request whose turn is further away than `max_wait` is not sent: the step's claim is released and
the message retried later with Dramatiq's exponential, jittered backoff, like any Stripe outage.

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
from redis.backoff import NoBackoff
from redis.retry import Retry

from domain.errors import PaymentProviderRateLimited

log = logging.getLogger(__name__)

#: The first pause after a 429, doubled for each further 429 within `STRIKES_FORGOTTEN_AFTER`.
FIRST_PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 30.0
STRIKES_FORGOTTEN_AFTER = 60

#: KEYS: the next free turn, the end of a pause (both in microseconds of Redis's clock).
#: ARGV: microseconds between turns, the longest wait accepted. Returns the wait for the turn
#: reserved, or -1 - the wait when it is longer than accepted (nothing reserved then).
_RESERVE_TURN = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local turn = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(redis.call('GET', KEYS[2]) or '0'))
local wait = turn - now
if wait > tonumber(ARGV[2]) then return -1 - wait end
redis.call('SET', KEYS[1], turn + tonumber(ARGV[1]), 'PX', math.floor((wait + tonumber(ARGV[1])) / 1000) + 1000)
return wait
"""


class StripeRequestBudget:
    def __init__(
        self, redis_url: str, per_second: int, namespace: str, *, max_wait: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Bounded waits and no retries: a silent Redis costs a request a quarter of a second.
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0),
        )
        self._reserve = self._redis.register_script(_RESERVE_TURN)
        prefix = f"{namespace}-stripe-budget"
        self._next_turn, self._paused, self._strikes = f"{prefix}:next", f"{prefix}:paused", f"{prefix}:strikes"
        self._spacing_us = max(1, 1_000_000 // per_second)
        self.max_wait = max_wait
        self._sleep = sleep

    def take(self) -> None:
        """Wait for this request's turn; PaymentProviderRateLimited if it is more than `max_wait` away."""
        try:
            wait_us = int(cast(int, self._reserve(keys=[self._next_turn, self._paused],
                                                  args=[self._spacing_us, int(self.max_wait * 1_000_000)])))
        except redis.RedisError:
            log.warning("Stripe request budget unavailable; not pacing", exc_info=True)
            return
        if wait_us < 0:
            raise PaymentProviderRateLimited(
                f"Stripe's request budget has no turn free for {(-1 - wait_us) / 1_000_000:.1f} s"
            )
        if wait_us > 0:
            self._sleep(wait_us / 1_000_000)

    def pause_after_refusal(self) -> float:
        """Stripe answered 429: pause every worker, longer for each 429 in a row; returns the pause
        (0 when one was already in force, which this 429 was a part of)."""
        try:
            strikes = int(cast(bytes | None, self._redis.get(self._strikes)) or 0)
            pause = float(min(MAX_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2**strikes) * random.uniform(0.5, 1.0))
            seconds, micros = cast(tuple[int, int], self._redis.time())
            until = seconds * 1_000_000 + micros + int(pause * 1_000_000)
            if not self._redis.set(self._paused, until, px=max(1, int(pause * 1000)), nx=True):
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
