"""Both brokers behave alike for the workers and the operators: retries, delays, dead letters
and their dashboard actions, queue depths. Each test runs on Redis and on RabbitMQ."""

from __future__ import annotations

import re
import time
import uuid

import dramatiq

from services import queues
from services.outbox import StagedMessage
from tests.integration.test_operations import _basic, _operator_key
from tests.support import BOTH_BROKERS, wait_for

pytestmark = BOTH_BROKERS


class TransientFault(Exception):
    """Stands for a lock timeout or an unreachable Stripe: worth another try."""


def _flaky_actor(runtime, *, fails: int, **options) -> tuple[dramatiq.Actor, list[float]]:
    """An actor on the maintenance queue that fails its first `fails` runs; records when each ran."""
    runs: list[float] = []

    def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) <= fails:
            raise TransientFault(f"run {len(runs)}")

    name = f"flaky_{uuid.uuid4().hex[:8]}"
    actor = dramatiq.Actor(flaky, broker=runtime.broker, actor_name=name, queue_name=queues.MAINTENANCE,
                           priority=0, options=options)
    return actor, runs


def test_a_failing_message_is_retried_after_its_backoff_and_then_succeeds(runtime, worker):
    actor, runs = _flaky_actor(runtime, fails=2, max_retries=5, min_backoff=300, max_backoff=600)
    actor.send()
    wait_for(lambda: len(runs) == 3, what="two retries")
    time.sleep(1)  # a success is final: no fourth run
    assert len(runs) == 3
    assert all(later - earlier >= 0.25 for earlier, later in zip(runs, runs[1:], strict=False))


def test_a_delayed_message_runs_once_its_delay_has_passed(runtime, worker):
    actor, runs = _flaky_actor(runtime, fails=0)
    sent_at = time.monotonic()
    actor.send_with_options(delay=1_500)
    wait_for(lambda: runs, what="the delayed message to run")
    assert runs[0] - sent_at >= 1.5
    assert len(runs) == 1


def test_the_dashboard_counts_ready_and_dead_messages_per_queue(app, runtime, settings):
    runtime.context.dispatch([StagedMessage(uuid.uuid4(), *queues.PLACE_BOOKING, (str(uuid.uuid4()),))
                              for _ in range(3)])
    key = _operator_key(runtime)

    depths = wait_for(lambda: _depth(app, key, queues.BOOKINGS) if _depth(app, key, queues.BOOKINGS)["ready"] == 3
                      else None, what="three ready placements")
    # RabbitMQ tells ready messages only: what workers hold unacknowledged is not visible over AMQP.
    assert depths["in_flight"] == (None if settings.uses_rabbitmq else 0)
    assert depths["dead"] == 0


def test_a_dead_letter_retried_from_the_console_runs_again_and_leaves_the_list(app, runtime, worker):
    actor, runs = _flaky_actor(runtime, fails=1, max_retries=0)
    message = actor.send()
    key = _operator_key(runtime)

    def dead_letters() -> list[dict]:
        letters = app.simulate_get("/ops/api/dead", params={"queue": queues.MAINTENANCE}, headers=_basic(key)).json
        return [letter for letter in letters["letters"] if letter["message_id"] == message.message_id]

    (letter,) = wait_for(dead_letters, what="the message to be dead-lettered")
    assert "TransientFault: run 1" in letter["error"] and "Traceback" in letter["traceback"]
    assert _depth(app, key, queues.MAINTENANCE)["dead"] == 1
    token = re.search(r'name="token" value="(\w+)"', app.simulate_get("/ops/dead", headers=_basic(key)).text)
    assert token is not None

    retried = app.simulate_post("/ops/dead", body=f"token={token.group(1)}&do=retry:{queues.MAINTENANCE}/{letter['redis_id']}",
                                headers={**_basic(key), "Content-Type": "application/x-www-form-urlencoded"})
    assert retried.status_code == 303
    wait_for(lambda: len(runs) == 2, what="the retried message to run")
    assert dead_letters() == []
    assert _depth(app, key, queues.MAINTENANCE)["dead"] == 0


def _depth(app, key: str, queue: str) -> dict:
    (depth,) = [q for q in app.simulate_get("/ops/api/queues", headers=_basic(key)).json["queues"] if q["name"] == queue]
    return depth
