"""The fault campaign's short form (the long form: `python -m bench.chaos`, 10,000 requests).

The one test that imports bench/: it runs the campaign through its public entry point (`run`,
`failures`), on purpose. Everything else tests and benchmarks share lives in testkit/.
"""

from __future__ import annotations

import pytest

from bench.chaos import ChaosConfig, failures, restart_figure, run
from tests.conftest import rabbitmq_url

pytestmark = pytest.mark.slow


# Past the suite's 300 s: a drain that runs out its own 300 s still prints the figures.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_invariants_hold_through_worker_kills_restarts_and_stripe_faults(tmp_path, broker):
    if broker == "rabbitmq" and rabbitmq_url() is None:
        pytest.skip("RabbitMQ is not reachable at 127.0.0.1:5672 or BROKER_URL")
    # Dashboard events are late, doubled or lost: the payment audit finds what no event told us.
    # Besides the usual mix: a rush for general-admission places, four holds left to lapse and
    # re-booked at once, two events cancelled while the faults run, every client's webhooks.
    figures = run(ChaosConfig(requests=80, clients=12, workers=2, seed=3, kill_every=2.5, broker=broker,
                              cancelled_events=2, doomed_share=0.15, lapses=4), root=tmp_path)
    details = figures.pop("_details")
    print("\n".join(f"{name}: {value}" for name, value in figures.items()))
    assert failures(figures) == [], details
    # Every request is accepted, or refused at once for breaking a sale rule (a slot outside hours).
    made = figures["booking requests made (accepted or refused by a sale rule)"]
    assert figures["requests accepted (202)"] + figures["requests refused at once by a sale rule (422)"] == made
    assert made >= 80
    assert figures["workers SIGKILLed"] >= 2
    assert figures[restart_figure(broker)] == "yes / yes"
    # Each of the four was played, not skipped.
    assert int(figures["general admission: bookings placed / rejected unavailable"].split(" / ")[0]) > 0
    assert figures["lapsed holds left to lapse but never held"] <= 1  # a hold may fail under the faults
    assert figures["events cancelled mid-campaign"] == "2 of 2"
    assert int(figures["their bookings: all / taken by the cancellation (held / confirmed at the time)"].split()[2]) > 0
    assert figures["notifications: booking transitions an endpoint subscribes to"] > 0
