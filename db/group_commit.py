"""Group commit: one statement, run for many concurrent callers in one transaction.

The accept path writes each booking with one statement. Run alone, every booking pays its own
round trip, its own COMMIT (a WAL flush) and the driver's and kernel's cost of each send and
wait; under load those were most of the API's and PostgreSQL's CPU per booking. Here the
callers that arrive while a batch is being written wait for it, and the next batch takes them
all: one transaction, one statement for all of them (`BatchedStatement.many`), one COMMIT.
Nobody waits for a batch to fill: a caller that finds nothing running writes at once (a batch of
one, exactly the old path), so a quiet API answers as fast as before and a busy one writes
larger batches.

Each caller still gets its own outcome:

- a batch's members are written in an order of the statement's (the idempotency key for
  bookings), so two batches that take the same keys take them in the same order and do not
  deadlock (a rare exception, a key sent twice in one batch whose first copy is refused, ends in
  PostgreSQL's deadlock detection and the fallback below);
- if any member's statement fails (a foreign key a catalog import just removed, a key a twin
  request holds past `BATCH_LOCK_TIMEOUT`), the transaction is rolled back and every member
  writes its own again, each in its own caller and all at once, so the failure is the failing
  member's alone and nobody waits behind it;
- if the connection is lost, every member writes its own too: a COMMIT whose outcome is unknown
  is what the idempotency key is for (a member whose batch did commit finds its key taken and
  is answered from the stored reply).

Callers are answered only after their batch is committed. Whichever caller arrives first leads
(flat combining): it runs one batch, with itself in it, then hands the lead to the first caller
still waiting. So no extra thread or greenlet exists, and the same code serves gevent (where
`threading` is patched) and real threads.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from db.driver import DriverStatement

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
    `run` answers each item with its result or the exception to raise in its caller.

    A caller not yet taken into a batch `wait_timeout` seconds after it arrived leaves the queue
    and raises `unavailable(reason)`, as does a caller whose batch's leader was interrupted
    (its outcome unknown); a caller already in a batch waits for the batch, whose own I/O must
    be bounded."""

    def __init__(
        self, run: Callable[[list[_Item]], Sequence[_Result | BaseException]], *, max_batch: int,
        wait_timeout: float | None = None, unavailable: Callable[[str], Exception] = RuntimeError,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._wait_timeout = wait_timeout
        self._unavailable = unavailable
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
                woken = slot.wake.wait(self._wait_timeout)
                if not woken and self._leave(slot):
                    raise self._unavailable(f"no batch took this call within {self._wait_timeout} s")
                slot.wake.wait()  # taken into a batch (or handed the lead) meanwhile
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
        """Run the batch and answer every member, whatever happens: a member taken out of the
        queue and never answered would wait forever."""
        outcomes: Sequence[_Result | BaseException] | None = None
        try:
            outcomes = self._run([slot.item for slot in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} was answered {len(outcomes)} times")
        except Exception as exc:  # noqa: BLE001 - each member raises it
            outcomes = [own_copy(exc) for _ in batch]
        finally:
            self.batches += 1
            self.items += len(batch)
            for position, slot in enumerate(batch):
                # No outcomes: the leader itself is being killed (GreenletExit at shutdown), and
                # its batch mates cannot know whether their writes were made.
                slot.outcome = (outcomes[position] if outcomes is not None
                                else self._unavailable("the batch's leader was interrupted"))
                slot.answered = True
                if slot is not own:
                    slot.wake.set()

    def _pass_lead(self) -> None:
        """With the lock held: the first caller waiting leads next, or nobody is busy."""
        if self._waiting:
            head = self._waiting[0]
            head.lead = True
            head.wake.set()
        else:
            self._busy = False

    def _leave(self, slot: _Slot[_Item, _Result]) -> bool:
        """Take a caller that gave up waiting out of the queue: True if it was still there (no
        batch has it); a lead it was handed passes on."""
        with self._lock:
            if slot not in self._waiting or slot.answered:
                return False
            self._waiting.remove(slot)
            if slot.lead:
                self._pass_lead()
            return True

    def _abandon(self, slot: _Slot[_Item, _Result]) -> None:
        """A waiting caller was interrupted: take it out, and pass on a lead it was handed."""
        self._leave(slot)


def own_copy(exc: Exception) -> Exception:
    """`exc` for one of several callers: raising one object in many would pile their tracebacks
    onto it."""
    try:
        copied = copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is shared
        return exc
    copied.__cause__, copied.__context__ = exc.__cause__, exc.__context__
    return copied


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


#: A batch waits this long at most for a row lock (an idempotency key a twin request is writing,
#: for milliseconds), then is written member by member, each with the engine's own lock timeout:
#: one contended key must not hold up the whole batch for as long.
BATCH_LOCK_TIMEOUT = "100ms"
#: A batch's statement takes milliseconds; one stuck longer than this is given up and written alone.
BATCH_STATEMENT_TIMEOUT = "5s"
#: A caller waits this long at most for a batch to take it (as long as for a pooled connection).
WAIT_TIMEOUT_SECONDS = 10.0

_BATCH_TIMEOUTS = DriverStatement(text(
    "SELECT set_config('lock_timeout', :lock_timeout, true), set_config('statement_timeout', :statement_timeout, true)"
))


class _WriteAlone:
    """A batch member's answer when its batch failed: the caller writes its own, at once."""


_WRITE_ALONE = _WriteAlone()


class GroupCommit:
    """Runs statements for concurrent callers, each statement's callers batched together."""

    def __init__(self, engine: Connections, *, max_batch: int = MAX_BATCH,
                 wait_timeout: float = WAIT_TIMEOUT_SECONDS) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._wait_timeout = wait_timeout
        self._combiners: dict[BatchedStatement, Combiner[Mapping[str, Any], Rows | _WriteAlone]] = {}
        self._lock = threading.Lock()

    def rows(self, statement: BatchedStatement, parameters: Mapping[str, Any]) -> Rows:
        """`statement`'s rows for `parameters`, committed, perhaps in one transaction with other
        callers'. Waiting longer than `wait_timeout` for a batch raises SQLAlchemy's TimeoutError,
        as waiting for a pooled connection would."""
        combiner = self._combiners.get(statement)
        if combiner is None:
            with self._lock:
                combiner = self._combiners.setdefault(statement, Combiner(
                    lambda batch: self._write(statement, batch), max_batch=self._max_batch,
                    wait_timeout=self._wait_timeout, unavailable=PoolTimeout,
                ))
        written = combiner(parameters)
        if isinstance(written, _WriteAlone):
            # The batch failed: each member writes its own, concurrently, and meets its own error.
            return self._alone(statement, parameters)
        return written

    def combiner(self, statement: BatchedStatement) -> Combiner[Mapping[str, Any], Rows | _WriteAlone] | None:
        """The batches of `statement` so far (for tests and benchmarks)."""
        return self._combiners.get(statement)

    def _write(
        self, statement: BatchedStatement, batch: list[Mapping[str, Any]]
    ) -> list[Rows | _WriteAlone | BaseException]:
        if len(batch) == 1:
            try:
                return [self._alone(statement, batch[0])]
            except Exception as exc:  # noqa: BLE001 - raised in its caller
                return [exc]
        try:
            with self._engine.begin() as connection:
                _BATCH_TIMEOUTS.rows(connection, {
                    "lock_timeout": BATCH_LOCK_TIMEOUT, "statement_timeout": BATCH_STATEMENT_TIMEOUT,
                })
                return list(statement.many(connection, batch))
        except Exception:  # noqa: BLE001 - each member's own write meets its own error, if any
            # Even a lost COMMIT is safe to write again: each member's rows hang on its key's
            # claim, so a member whose batch did commit finds its key taken and replays it.
            return [_WRITE_ALONE] * len(batch)

    def _alone(self, statement: BatchedStatement, parameters: Mapping[str, Any]) -> Rows:
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return statement.one(connection, parameters)
