"""What the campaign saw happen while it ran: the answers, what it did, the faults it played."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Observations:
    answers: list[tuple[float, str, int]] = field(default_factory=list)  # (time, what, status)
    #: Every POST /v1/bookings the clients made: each is accepted or refused for a sale rule.
    booking_requests: int = 0
    accepted: set[str] = field(default_factory=set)
    #: Booking requests the API refused at once for a sale rule (a slot outside the hours, say).
    refused_by_rule: Counter[str] = field(default_factory=Counter)
    outages: list[tuple[float, float]] = field(default_factory=list)  # PostgreSQL down, with grace
    kills: int = 0
    in_flight_at_kills: set[str] = field(default_factory=set)  # bookings whose placement a kill cut
    webhooks_sent: int = 0
    restarts: dict[str, bool] = field(default_factory=dict)
    #: What clients, operators and the dashboard did, by name.
    actions: Counter[str] = field(default_factory=Counter)
    foreign_intents: set[str] = field(default_factory=set)
    foreign_events: set[str] = field(default_factory=set)
    poison: list[tuple[float, str, str, int]] = field(default_factory=list)  # (time, event id, what, status)
    retry_bursts: list[tuple[str, Counter[int]]] = field(default_factory=list)
    #: Events the operator cancelled: event id -> (when the cancel was sent, when it was answered 202).
    cancelled_events: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, what: str, status: int) -> None:
        with self.lock:
            self.answers.append((time.monotonic(), what, status))

    def did(self, action: str) -> None:
        with self.lock:
            self.actions[action] += 1
