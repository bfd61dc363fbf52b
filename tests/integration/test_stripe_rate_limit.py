"""Stripe's rate limit: every worker's requests share one budget in Redis, a 429 pauses them all,
and an event cancellation's fan-out through a run of 429s still settles every booking once, with
no extra charge or refund. Real Redis, real SDK against the local Stripe server, real workers."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.stripe import StripeGateway, make_stripe_client
from adapters.stripe_budget import StripeRequestBudget
from domain.errors import PaymentProviderRateLimited
from tests.integration.test_catalog import _seated_event, operator  # noqa: F401  (the fixture)
from tests.support import new_key, seat_request, stripe_client, wait_for, wait_for_statuses


def _refuse_next(stripe_url: str, count: int) -> None:
    httpx.post(f"{stripe_url}/_config/rate_limit", data={"count": str(count)}, trust_env=False).raise_for_status()


def _rate_limit_counts(stripe_url: str) -> dict[str, int]:
    return dict(httpx.get(f"{stripe_url}/_config/rate_limit", trust_env=False).json())


@pytest.fixture
def budgets(settings: Any) -> Iterator[Any]:
    """Budgets over one namespace, as separate worker processes have: `make(per_second, max_wait)`."""
    namespace, made = f"budget-test-{uuid.uuid4().hex[:8]}", []

    def make(per_second: int, max_wait: float = 0.0, ns: str = namespace, sleep: Any = None) -> StripeRequestBudget:
        budget = StripeRequestBudget(settings.redis_url, per_second, ns, max_wait=max_wait, **(
            {"sleep": sleep} if sleep else {}))
        made.append(budget)
        return budget

    yield make
    for budget in made:
        keys = list(budget._redis.scan_iter(f"*{namespace}*"))
        if keys:
            budget._redis.delete(*keys)
        budget.close()


def test_worker_processes_take_turns_in_one_budget_in_the_order_they_ask(budgets):
    # Two processes, five requests a second between them: turns 0.2 s apart, whoever asks. The
    # waits are recorded, not slept, so the turns are reserved at (almost) the same instant.
    waits: list[float] = []
    first, second = budgets(5, max_wait=0.9, sleep=waits.append), budgets(5, max_wait=0.9, sleep=waits.append)
    for budget in (first, second, first, second, first):
        budget.take()
    assert [round(w, 1) for w in waits] == [0.2, 0.4, 0.6, 0.8]  # the first went at once
    with pytest.raises(PaymentProviderRateLimited):
        second.take()  # its turn would be a second away: not sent, retried with backoff
    other = budgets(5, max_wait=0.9, ns=f"another-{uuid.uuid4().hex[:6]}", sleep=waits.append)
    other.take()  # control: another account's budget is its own
    assert len(waits) == 4


def test_a_429_pauses_every_worker_and_a_second_one_pauses_longer(settings, budgets):
    refused_by, bystander = budgets(1000), budgets(1000)
    gateway = StripeGateway(make_stripe_client("sk_test_local", settings.stripe_api_base, budget=refused_by),
                            return_url="http://127.0.0.1/")
    _refuse_next(settings.stripe_api_base, 1)
    with pytest.raises(PaymentProviderRateLimited):
        gateway.retrieve("pi_whatever")  # the SDK's own answer to a 429 is not to retry it
    first_pause = bystander._redis.pttl(bystander._paused) / 1000
    assert 0.2 < first_pause <= 1.0  # half a second to one, less what this test took since
    with pytest.raises(PaymentProviderRateLimited):
        bystander.take()  # another process waits for the pause, and gives up past its max_wait

    bystander._redis.delete(bystander._paused)  # the pause has run out; 429s are still counted
    assert refused_by.pause_after_refusal() > 1.0 - 1e-9  # doubled, jittered down at most to half
    assert _rate_limit_counts(settings.stripe_api_base)["refused"] == 1


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, stripe_max_requests_per_second=40)


def test_an_event_cancellation_through_a_run_of_429s_settles_every_booking_once(
    api, operator, runtime, worker, outcomes,  # noqa: F811
):
    stripe_url = runtime.context.settings.stripe_api_base
    event, seats = _seated_event(operator)
    held = [api.book(seat_request(event["id"], [seat])).json["id"] for seat in seats[:5]]
    paid = [api.book(seat_request(event["id"], [seat], capture="immediate")).json["id"] for seat in seats[5:10]]
    wait_for_statuses(runtime.context.sessions, held, {"authorized"})
    wait_for_statuses(runtime.context.sessions, paid, {"confirmed"})

    # Each 429 that finds no pause in force doubles the next pause: five in a row pause up to 31 s.
    _refuse_next(stripe_url, 5)
    assert operator.post(f"/v1/events/{event['id']}/cancel", key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, held, {"cancelled"}, timeout=90)
    wait_for_statuses(runtime.context.sessions, paid, {"refunded"}, timeout=90)
    wait_for(lambda: api.get(f"/v1/events/{event['id']}").json["cancellation"] == {"bookings": 10, "done": 10,
                                                                                   "failed": 0},
             what="the cancellation done")

    assert _rate_limit_counts(stripe_url)["refused"] == 5
    retried = {failure.error for failure in outcomes.failures}
    assert retried <= {"PaymentProviderRateLimited"}, outcomes.failures  # retried for the 429s, nothing else
    stripe = stripe_client(stripe_url)
    for booking_id in held + paid:
        booking = api.get(f"/v1/bookings/{booking_id}").json
        intent = stripe.v1.payment_intents.retrieve(booking["payment"]["provider_ref"]).to_dict()
        charge = intent["latest_charge"]
        refunds = stripe.v1.refunds.list(params={"payment_intent": intent["id"]}).data
        if booking_id in held:
            assert intent["status"] == "canceled" and refunds == []
        else:
            assert [r["amount"] for r in refunds] == [booking["total_amount"]]  # once, in full
            assert charge["amount_refunded"] == booking["payment"]["amount_refunded"] == booking["total_amount"]
