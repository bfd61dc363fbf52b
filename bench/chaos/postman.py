"""Signed Stripe events delivered to the webhook route when due, late, twice and out of order."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.chaos.config import WEBHOOK_SECRET
from bench.chaos.observations import Observations
from testkit.stripe_webhooks import sign


class Postman:
    """Delivers signed events to the webhook route when they are due, in shuffled order; an event
    scheduled with two delays comes twice. What is still pending when the load stops is delivered
    at once: late, not lost (lost is an event never scheduled)."""

    def __init__(self, base_url: str, observations: Observations) -> None:
        self.base_url, self.observations = base_url, observations
        self.pending: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        self.rng = random.Random(0)

    def schedule(self, event: dict[str, Any], delays: Sequence[float]) -> None:
        body = json.dumps(event).encode()
        with self.lock:
            self.pending.extend((time.monotonic() + delay, body) for delay in delays)

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.base_url, trust_env=False, timeout=10) as http:
            while not stop.wait(0.25):
                self._deliver(http, self._due(time.monotonic()))
            for _ in range(5):  # what is left, late; failed deliveries a few more times
                self._deliver(http, self._due(float("inf")))

    def _due(self, now: float) -> list[bytes]:
        with self.lock:
            due = [body for at, body in self.pending if at <= now]
            self.pending = [(at, body) for at, body in self.pending if at > now]
        self.rng.shuffle(due)
        return due

    def _deliver(self, http: httpx.Client, bodies: list[bytes]) -> None:
        for body in bodies:
            status = self.deliver(http, body)
            self.observations.answer("webhook", status)
            if status == 0 or status >= 500:
                # Stripe delivers again after a failure (for days): so does the campaign.
                with self.lock:
                    self.pending.append((time.monotonic() + 2.0, body))

    def deliver(self, http: httpx.Client, body: bytes) -> int:
        """Post one signed body now; its status (0: no answer)."""
        try:
            answer = http.post("/v1/webhooks/stripe", content=body, headers={
                "Stripe-Signature": sign(body, WEBHOOK_SECRET), "Content-Type": "application/json"})
        except httpx.HTTPError:
            return 0
        with self.observations.lock:
            self.observations.webhooks_sent += 1
        return answer.status_code
