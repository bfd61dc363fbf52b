"""Booking requests that arrive together are written together (one transaction, one statement
for all of them, `db.group_commit`), and each still gets its own outcome: its own booking, its
own refusal, or the answer already given to its key."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError

from db.engine import transaction
from db.group_commit import GroupCommit, _WriteAlone
from db.queries.bookings import PRICED_REQUESTS
from tests.support import first_event, new_key, seat_request

pytestmark = pytest.mark.commits


class HeldFirstWrite:
    """Holds the first write of the accept path's statement until released, so the requests
    sent meanwhile wait for the next batch; records every batch's size."""

    def __init__(self, monkeypatch: Any) -> None:
        self.release = threading.Event()
        self.sizes: list[int] = []
        one, many = PRICED_REQUESTS.one, PRICED_REQUESTS.many

        def held_one(connection: Any, parameters: Any) -> Any:
            if not self.sizes:
                self.sizes.append(1)
                self.release.wait(10)
            return one(connection, parameters)

        def counted_many(connection: Any, batch: Any) -> Any:
            self.sizes.append(len(batch))
            return many(connection, batch)

        monkeypatch.setattr(PRICED_REQUESTS, "one", held_one)
        monkeypatch.setattr(PRICED_REQUESTS, "many", counted_many)


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)  # polling the other threads' progress


def _together(api: Any, runtime: Any, held: HeldFirstWrite, requests: list[tuple[dict[str, Any], str]]) -> list[Any]:
    """The first request alone (held in its write), then the rest while it is held: one batch."""
    group: GroupCommit = runtime.context.group_commit
    with ThreadPoolExecutor(len(requests)) as pool:
        first = pool.submit(api.book, requests[0][0], key=requests[0][1])
        _wait_for(lambda: held.sizes == [1])
        rest = [pool.submit(api.book, body, key=key) for body, key in requests[1:]]
        combiner = group.combiner(PRICED_REQUESTS)
        assert combiner is not None
        _wait_for(lambda: combiner.waiting == len(rest))
        held.release.set()
        return [first.result(timeout=30), *(f.result(timeout=30) for f in rest)]


def _warm(api: Any, event_id: uuid.UUID, seat: uuid.UUID) -> None:
    """The event is read once and remembered: the requests after it take the one-statement path."""
    assert api.book(seat_request(event_id, [seat])).status_code == 202


def _rows_of(runtime: Any, booking_ids: list[str]) -> dict[str, tuple[int, int, int, int, int]]:
    with transaction(runtime.context.sessions) as session:
        rows = session.execute(text("""
            SELECT b.id,
                   (SELECT count(*) FROM booking_items WHERE booking_id = b.id),
                   (SELECT count(*) FROM payments WHERE booking_id = b.id),
                   (SELECT count(*) FROM booking_transitions WHERE booking_id = b.id),
                   (SELECT count(*) FROM outbox WHERE args ->> 0 = b.id::text),
                   (SELECT count(*) FROM idempotency_keys WHERE response_location = '/v1/bookings/' || b.id)
            FROM bookings AS b WHERE b.id = ANY(CAST(:ids AS uuid[]))
        """), {"ids": booking_ids}).all()
    return {str(row[0]): tuple(row[1:]) for row in rows}


def test_requests_sent_while_one_is_written_are_written_together_each_complete(api, runtime, monkeypatch):
    event_id, seats = first_event(runtime.context.sessions)
    _warm(api, event_id, seats[0])
    held = HeldFirstWrite(monkeypatch)
    requests = [(seat_request(event_id, seats[1 + 2 * n: 3 + 2 * n]), new_key()) for n in range(10)]
    answers = _together(api, runtime, held, requests)
    assert held.sizes == [1, 9]
    assert [a.status_code for a in answers] == [202] * 10, [a.json for a in answers]
    for answer, (body, _) in zip(answers, requests, strict=True):
        assert [item["seat_id"] for item in answer.json["items"]] == body["seat_ids"]
    ids = [a.json["id"] for a in answers]
    assert _rows_of(runtime, ids) == {booking_id: (2, 1, 1, 1, 1) for booking_id in ids}


def test_one_key_twice_in_a_batch_is_one_booking_and_one_answer(api, runtime, monkeypatch):
    event_id, seats = first_event(runtime.context.sessions)
    _warm(api, event_id, seats[0])
    held = HeldFirstWrite(monkeypatch)
    twice = (seat_request(event_id, seats[5:6]), new_key())
    requests = [(seat_request(event_id, seats[1:2]), new_key()), twice, (seat_request(event_id, seats[3:4]), new_key()), twice]
    answers = _together(api, runtime, held, requests)
    assert held.sizes == [1, 3]  # the batch is the three after the held one
    assert [a.status_code for a in answers] == [202] * 4
    assert answers[1].json == answers[3].json
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers[1::2]) == ["", "true"]
    assert len(_rows_of(runtime, [a.json["id"] for a in answers])) == 3


def test_a_request_whose_catalog_changed_is_refused_alone_in_its_batch(api, runtime, monkeypatch):
    event_id, seats = first_event(runtime.context.sessions)
    _warm(api, event_id, seats[0])
    with transaction(runtime.context.sessions) as session:  # a seat the process still remembers
        session.execute(text("DELETE FROM seats WHERE id = :id"), {"id": seats[7]})
    held = HeldFirstWrite(monkeypatch)
    requests = [(seat_request(event_id, seats[n:n + 1]), new_key()) for n in (1, 3, 7, 5)]
    answers = _together(api, runtime, held, requests)
    assert [a.status_code for a in answers] == [202, 202, 422, 202]
    assert answers[2].json["error"]["details"][0]["code"] == "not_at_event"
    assert len(_rows_of(runtime, [a.json["id"] for a in answers if a.status_code == 202])) == 3


def test_a_batch_whose_statement_fails_is_written_again_one_by_one(runtime):
    """One member's error aborts the batch's transaction: every member then writes its own, and
    the error is the failing member's only."""
    written: list[str] = []

    class DividesBy:
        def one(self, connection: Any, parameters: Any) -> Any:
            written.append("one")
            return connection.execute(text("SELECT 10 / :n"), parameters).all()

        def many(self, connection: Any, batch: Any) -> Any:
            written.append("many")
            return [connection.execute(text("SELECT 10 / :n"), p).all() for p in batch]

    group = GroupCommit(runtime.engine)
    batch = [{"n": 2}, {"n": 0}, {"n": 5}]
    outcomes = group._write(DividesBy(), batch)
    assert written == ["many"] and all(isinstance(o, _WriteAlone) for o in outcomes)
    # What each member's caller then does (GroupCommit.rows), in its own thread.
    assert group._alone(DividesBy(), batch[0]) == [(5,)] and group._alone(DividesBy(), batch[2]) == [(2,)]
    with pytest.raises(DataError, match="division by zero"):
        group._alone(DividesBy(), batch[1])


def test_a_key_held_elsewhere_does_not_hold_up_its_batch_mates(api, runtime, monkeypatch):
    """A batch member whose key another transaction is writing: the batch gives up after its short
    lock timeout and each member writes its own at once; the others are answered while that one
    still waits for the key."""
    event_id, seats = first_event(runtime.context.sessions)
    _warm(api, event_id, seats[0])
    held = HeldFirstWrite(monkeypatch)
    contended = (seat_request(event_id, seats[9:10]), new_key())
    requests = [(seat_request(event_id, seats[1:2]), new_key()), (seat_request(event_id, seats[3:4]), new_key()),
                contended, (seat_request(event_id, seats[5:6]), new_key())]
    client_id = _client_id(runtime, api)
    blocker = runtime.engine.connect()
    transaction_ = blocker.begin()
    blocker.execute(text("INSERT INTO idempotency_keys (client_id, key, fingerprint) VALUES (:c, :k, 'x')"),
                    {"c": client_id, "k": contended[1]})
    group: GroupCommit = runtime.context.group_commit
    try:
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(api.book, requests[0][0], key=requests[0][1])
            _wait_for(lambda: held.sizes == [1])
            rest = [pool.submit(api.book, body, key=key) for body, key in requests[1:]]
            combiner = group.combiner(PRICED_REQUESTS)
            assert combiner is not None
            _wait_for(lambda: combiner.waiting == 3)
            held.release.set()
            # The two free members are answered while the contended key is still held.
            assert [f.result(timeout=10).status_code for f in (first, rest[0], rest[2])] == [202] * 3
            assert not rest[1].done()
            transaction_.rollback()  # the other writer gives the key up
            assert rest[1].result(timeout=10).status_code == 202
    finally:
        blocker.close()
    assert held.sizes == [1, 3]


def _client_id(runtime: Any, api: Any) -> uuid.UUID:
    """The API client's id, from the booking `_warm` made (the test's tables hold only its own)."""
    with transaction(runtime.context.sessions) as session:
        return session.execute(text("SELECT DISTINCT client_id FROM bookings")).scalar_one()
