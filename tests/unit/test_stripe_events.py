"""The shapes Stripe can send to the webhook, and the nesting bound, without I/O."""

from __future__ import annotations

import json

import pytest

from api.stripe_events import MAX_NESTING, nests_deeper_than, shape_problem
from testkit.stripe_webhooks import stripe_event


def _nested(levels: int) -> bytes:
    return ("[" * levels + "]" * levels).encode()


def test_nesting_up_to_the_bound_is_accepted_and_one_more_level_is_not() -> None:
    assert not nests_deeper_than(_nested(MAX_NESTING), MAX_NESTING)
    assert nests_deeper_than(_nested(MAX_NESTING + 1), MAX_NESTING)
    assert nests_deeper_than(b'{"a": {"b": [{"c": [[]]}]}}', 5)
    assert not nests_deeper_than(b'{"a": {"b": [{"c": [[]]}]}}', 6)


@pytest.mark.parametrize("text", ['"[[[[[[[["', '"\\"[[[[[[[[\\""', '"\\\\"', '"{\\u005b}"'])
def test_brackets_inside_strings_are_not_nesting(text: str) -> None:
    assert not nests_deeper_than(f'{{"s": [{text}]}}'.encode(), 2)


def test_a_real_payment_intent_event_has_the_shape_stripe_sends() -> None:
    intent = {"id": "pi_3Abc", "object": "payment_intent", "amount": 12000, "amount_capturable": 0,
              "amount_received": 12000, "currency": "eur", "status": "succeeded",
              "metadata": {"booking_id": "b"}, "last_payment_error": None, "latest_charge": "ch_1"}
    assert shape_problem(json.loads(json.dumps(stripe_event("payment_intent.succeeded", intent)))) is None


@pytest.mark.parametrize("obj, where", [
    ({"id": "pi_1", "amount": 100.0}, "data.object.amount"),
    ({"id": "pi_1", "amount": True}, "data.object.amount"),
    ({"id": "pi_1", "currency": "EURO"}, "data.object.currency"),
    ({"id": "ch_1"}, "data.object.id"),
    ({"id": "pi_1", "metadata": {"booking_id": {"nested": "x"}}}, "data.object.metadata.booking_id"),
    ({"id": "pi_1", "last_payment_error": {"code": 402}}, "data.object.last_payment_error.code"),
])
def test_a_payment_intent_with_a_field_stripe_never_sends_is_refused_where_it_is_wrong(obj, where) -> None:
    problem = shape_problem(stripe_event("payment_intent.payment_failed", obj))
    assert problem is not None and problem.startswith(where + ":")


def test_an_unknown_type_is_checked_only_for_its_envelope() -> None:
    assert shape_problem(stripe_event("invoice.paid", {"id": 7, "amount": "x"})) is None
    assert shape_problem({**stripe_event("invoice.paid", {}), "data": []}) is not None
