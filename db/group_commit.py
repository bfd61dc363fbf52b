"""Group commit: one statement, run for many concurrent callers in one transaction.

The accept path writes each booking with one statement. Run alone, every booking pays its own
round trip, its own COMMIT (a WAL flush) and the driver's and kernel's cost of each send and
wait; under load those were most of the API's and PostgreSQL's CPU per booking. Here the
callers that arrive while a batch is being written wait for it, and the next batch takes them
all: one transaction, one statement for all of them (`BatchedStatement.many`), one COMMIT. Nobody waits for a batch to fill: a caller that finds nothing running writes at once
(a batch of one, exactly the old path), so a quiet API answers as fast as before and a busy one
writes larger batches.

Each caller still gets its own outcome:

- a batch's members are written in an order of the statement's (the idempotency key for
  bookings), so two batches that take the same keys take them in the same order and cannot
  deadlock;
- if any member's statement fails (a foreign key a catalog import just removed, a lock
  timeout), the transaction is rolled back and every member is written again on its own, so
  the failure is the failing member's alone;
- if the connection is lost, every member gets the error, as each would have on its own; a
  COMMIT whose outcome is unknown is what the idempotency key is for (a retry is answered from
  the stored reply if the batch did commit).

Callers are answered only after their batch is committed. Whichever caller arrives first leads
(flat combining): it runs one batch, with itself in it, then hands the lead to the first caller
still waiting. So no extra thread or greenlet exists, and the same code serves gevent (where
`threading` is patched) and real threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")

#: Members of one batch at most: large enough to take every request a busy web worker has in
#: flight, small enough that one transaction stays short.
MAX_BATCH = 64

Rows = list[tuple[Any, ...]]


class _Slot(Generic[_Item, _Result]):
    __slots__ = ("item", "outcome", "answered", "lead", "wake")

    def __init__(self, item: _Item) -> None:
        self.item = item
        self.outcome: _Result | BaseException | None = None
        self.answered = False
        #: Handed the lead while waiting: it runs the next batch.
        self.lead = False
        self.wake = threading.Event()

    def result(self) -> _Result:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome  # type: ignore[return-value]


class Combiner(Generic[_Item, _Result]):
    """Calls `run` with the items of every caller waiting, in batches of at most `max_batch`;
    `run` answers each item with its result or the exception to raise in its caller."""

    def __init__(self, run: Callable[[list[_Item]], Sequence[_Result | BaseException]], *, max_batch: int) -> None:
        self._run = run
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: deque[_Slot[_Item, _Result]] = deque()
        self._busy = False
        #: Batches run and items answered, for tests and benchmarks.
        self.batches = 0
        self.items = 0

    @property
    def waiting(self) -> int:
        """Callers waiting for a batch (for tests)."""
        return len(self._waiting)

    def __call__(self, item: _Item) -> _Result:
        slot: _Slot[_Item, _Result] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            try:
                slot.wake.wait()
            except BaseException:
                self._abandon(slot)
                raise
            if slot.answered:
                return slot.result()
        self._lead(slot)
        return slot.result()

    def _lead(self, own: _Slot[_Item, _Result]) -> None:
        """Run one batch, `own` first in it (the queue's head), then pass the lead on."""
        try:
            with self._lock:
                batch = [self._waiting.popleft() for _ in range(min(self._max_batch, len(self._waiting)))]
            self._answer(batch, own)
        finally:
            with self._lock:
                self._pass_lead()

    def _answer(self, batch: list[_Slot[_Item, _Result]], own: _Slot[_Item, _Result]) -> None:
        interrupted: BaseException | None = None
        try:
            outcomes: Sequence[_Result | BaseException] = self._run([slot.item for slot in batch])
        except Exception as exc:  # noqa: BLE001 - each member raises it
            outcomes = [exc] * len(batch)
        except BaseException as exc:  # the leader is being killed: the others must not wait forever
            interrupted = exc
            outcomes = [RuntimeError("the batch's leader was interrupted")] * len(batch)
        self.batches += 1
        self.items += len(batch)
        for slot, outcome in zip(batch, outcomes, strict=True):
            slot.outcome, slot.answered = outcome, True
            if slot is not own:
                slot.wake.set()
        if interrupted is not None:
            raise interrupted

    def _pass_lead(self) -> None:
        """With the lock held: the first caller waiting leads next, or nobody is busy."""
        if self._waiting:
            head = self._waiting[0]
            head.lead = True
            head.wake.set()
        else:
            self._busy = False

    def _abandon(self, slot: _Slot[_Item, _Result]) -> None:
        """A waiting caller was interrupted: take it out, and pass on a lead it was handed."""
        with self._lock:
            if slot in self._waiting:
                self._waiting.remove(slot)
                if slot.lead:
                    self._pass_lead()


class Connections(Protocol):
    """What group commit needs of an engine: connections in autocommit, and transactions."""

    def connect(self) -> Any: ...

    def begin(self) -> Any: ...


class BatchedStatement(Protocol):
    """A write that group commit can run for one caller, or for many in one transaction."""

    def one(self, connection: Connection, parameters: Mapping[str, Any]) -> Rows:
        """One caller's rows, on a connection in autocommit."""

    def many(self, connection: Connection, batch: Sequence[Mapping[str, Any]]) -> list[Rows]:
        """Each caller's rows, in the batch's order, inside the transaction `connection` began;
        in an order of its own that two batches cannot deadlock on."""


class GroupCommit:
    """Runs statements for concurrent callers, each statement's callers batched together."""

    def __init__(self, engine: Connections, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._combiners: dict[BatchedStatement, Combiner[Mapping[str, Any], Rows]] = {}
        self._lock = threading.Lock()

    def rows(self, statement: BatchedStatement, parameters: Mapping[str, Any]) -> Rows:
        """`statement`'s rows for `parameters`, committed, perhaps in one transaction with other
        callers'."""
        combiner = self._combiners.get(statement)
        if combiner is None:
            with self._lock:
                combiner = self._combiners.setdefault(statement, Combiner(
                    lambda batch: self._write(statement, batch), max_batch=self._max_batch,
                ))
        return combiner(parameters)

    def combiner(self, statement: BatchedStatement) -> Combiner[Mapping[str, Any], Rows] | None:
        """The batches of `statement` so far (for tests and benchmarks)."""
        return self._combiners.get(statement)

    def _write(self, statement: BatchedStatement, batch: list[Mapping[str, Any]]) -> list[Rows | BaseException]:
        if len(batch) == 1:
            return [self._alone(statement, batch[0])]
        try:
            with self._engine.begin() as connection:
                return list(statement.many(connection, batch))
        except DBAPIError as exc:
            if exc.connection_invalidated:
                return [exc] * len(batch)
            # One member's failure aborted the transaction: each on its own finds whose it was.
            return [self._alone(statement, parameters) for parameters in batch]

    def _alone(self, statement: BatchedStatement, parameters: Mapping[str, Any]) -> Rows | BaseException:
        try:
            with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                return statement.one(connection, parameters)
        except Exception as exc:  # noqa: BLE001 - raised in its caller
            return exc
