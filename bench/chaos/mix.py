"""What each client asks for, request after request: the mix of the campaign's load."""

from __future__ import annotations

from typing import Any

from bench.chaos.caller import Caller
from bench.chaos.clients import book_contended, book_open_seat
from bench.chaos.config import ChaosConfig
from bench.chaos.event_cancellations import book_doomed_seat
from bench.chaos.general_admission import book_places


def run_client(caller: Caller, catalog: dict[str, Any], count: int, index: int, config: ChaosConfig) -> None:
    """A well-behaved client: retries a failed POST with the same Idempotency-Key, then acts.

    Its first request is for places at the first general-admission event, at the same moment as
    every other client's (a rush); then places, a seat of an event about to be cancelled, a seat
    nobody else wants, or the demo's contended seats and slots, by the configured shares."""
    general, doomed = catalog["general"], catalog["doomed"]
    with caller.http:
        for n in range(count):
            kind = caller.rng.random()
            own = index + n * config.clients  # a seat index nobody else's
            if general and (n == 0 or kind < config.general_share):
                book_places(caller, general[0] if n == 0 else caller.rng.choice(general))
            elif doomed and kind < config.general_share + config.doomed_share and book_doomed_seat(
                    caller, doomed, catalog["doomed_seats"][own]):
                pass
            elif caller.rng.random() < config.open_share:
                book_open_seat(caller, caller.rng.choice(catalog["open_events"]), catalog["open_seats"][own])
            else:
                book_contended(caller, catalog)
