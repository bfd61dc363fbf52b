"""One client's connection to the API, with what it needs to act as the operator and the dashboard too."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import stripe

from bench.chaos.config import SALE_RULES
from bench.chaos.observations import Observations
from bench.chaos.postman import Postman
from testkit.faults import WebhookRelay

if TYPE_CHECKING:
    from bench.chaos.cluster import Cluster


@dataclass
class Caller:
    """One client's connection, with what it needs to act as the operator and the dashboard too."""

    http: httpx.Client
    headers: dict[str, str]
    operator: dict[str, str]
    observations: Observations
    postman: Postman
    stripe: stripe.StripeClient
    stripe_url: str
    relay: WebhookRelay
    rng: random.Random
    silent_dashboard: bool = True

    @classmethod
    def of(cls, cluster: Cluster, observations: Observations, postman: Postman, key: str, operator_key: str,
           seed: int, silent_dashboard: bool) -> Caller:
        return cls(
            httpx.Client(base_url=cluster.base_url, trust_env=False, timeout=15),
            {"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {operator_key}"}, observations, postman,
            stripe.StripeClient("sk_test_chaos", base_addresses={"api": cluster.stripe.url}), cluster.stripe.url,
            cluster.relay, random.Random(seed), silent_dashboard,
        )

    def post(self, path: str, body: Any = None, *, operator: bool = False) -> httpx.Response | None:
        return post_retrying(self.http, self.observations, path, body, self.operator if operator else self.headers)

    def booking(self, booking_id: str) -> dict[str, Any]:
        try:
            answer = self.http.get(f"/v1/bookings/{booking_id}", headers=self.headers)
            return dict(answer.json()) if answer.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}

    def wait(self, booking_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
        """The booking once `until` holds for it, or as it stands after `timeout`."""
        deadline = time.monotonic() + timeout
        booking = self.booking(booking_id)
        while not until(booking) and time.monotonic() < deadline:
            time.sleep(0.15)
            booking = self.booking(booking_id)
        return booking

    def book(self, body: dict[str, Any]) -> str | None:
        """The new booking's id, or None if it was refused (a sale rule) or never answered."""
        with self.observations.lock:
            self.observations.booking_requests += 1
        answer = self.post("/v1/bookings", body)
        if answer is not None and answer.status_code == 422 and answer.json()["error"]["code"] in SALE_RULES:
            with self.observations.lock:
                self.observations.refused_by_rule[answer.json()["error"]["code"]] += 1
            return None
        if answer is None or answer.status_code != 202:
            return None
        booking_id = str(answer.json()["id"])
        with self.observations.lock:
            self.observations.accepted.add(booking_id)
        return booking_id


def post_retrying(http: httpx.Client, observations: Observations, path: str, body: Any, headers: dict[str, str]) -> httpx.Response | None:
    key = uuid.uuid4().hex
    for attempt in range(20):
        try:
            answer = http.post(path, json=body, headers={**headers, "Idempotency-Key": key})
        except httpx.HTTPError:
            observations.answer(path, 0)
            time.sleep(min(0.2 * 2 ** attempt, 3))
            continue
        observations.answer(path.rsplit("/", 1)[-1] if "/bookings/" in path else path, answer.status_code)
        if answer.status_code < 500 and answer.status_code != 429:
            return answer
        time.sleep(min(0.2 * 2 ** attempt, 3))
    return None


