"""Flat combining (db.group_commit.Combiner): callers that arrive while a batch runs go together in
the next one, each gets its own result or error, and the lead always passes on. Real threads,
no I/O."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from db import group_commit
from db.group_commit import Combiner


class HeldRuns:
    """A batch function whose first run waits until released, so that callers pile up behind it."""

    def __init__(self, answer: Callable[[int], Any] = lambda item: item * 10) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.answer = answer

    def __call__(self, batch: list[int]) -> list[Any]:
        if not self.batches:
            self.release.wait(10)
        self.batches.append(batch)
        return [self.answer(item) for item in batch]


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)  # polling other threads' progress, not waiting for time to pass


def test_a_caller_alone_runs_at_once_in_a_batch_of_its_own() -> None:
    combiner = Combiner(lambda batch: [item + 1 for item in batch], max_batch=8)
    assert [combiner(1), combiner(2)] == [2, 3]
    assert (combiner.batches, combiner.items) == (2, 2)


def test_callers_arriving_while_a_batch_runs_go_together_in_the_next() -> None:
    runs = HeldRuns()
    combiner = Combiner(runs, max_batch=64)
    with ThreadPoolExecutor(10) as pool:
        first = pool.submit(combiner, 0)
        _wait_for(lambda: runs.batches == [] and combiner.waiting == 0 and combiner.batches == 0)
        time.sleep(0.01)  # the first caller is inside its run, held
        others = [pool.submit(combiner, n) for n in range(1, 10)]
        _wait_for(lambda: combiner.waiting == 9)
        runs.release.set()
        assert first.result(timeout=10) == 0 and [f.result(timeout=10) for f in others] == [n * 10 for n in range(1, 10)]
    assert runs.batches == [[0], list(range(1, 10))]


def test_batches_are_at_most_max_batch_and_the_lead_passes_on_until_nobody_waits() -> None:
    runs = HeldRuns()
    combiner = Combiner(runs, max_batch=4)
    with ThreadPoolExecutor(11) as pool:
        first = pool.submit(combiner, 0)
        time.sleep(0.01)
        others = [pool.submit(combiner, n) for n in range(1, 11)]
        _wait_for(lambda: combiner.waiting == 10)
        runs.release.set()
        assert [f.result(timeout=10) for f in [first, *others]] == [n * 10 for n in range(11)]
    assert [len(b) for b in runs.batches] == [1, 4, 4, 2]
    assert combiner(11) == 110  # nobody is left leading: a new caller runs at once


def test_each_caller_gets_its_own_error() -> None:
    def answer(item: int) -> Any:
        return ValueError(f"bad {item}") if item % 2 else item

    runs = HeldRuns(answer)
    combiner = Combiner(runs, max_batch=64)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(combiner, 0)
        time.sleep(0.01)
        others = {n: pool.submit(combiner, n) for n in range(1, 6)}
        _wait_for(lambda: combiner.waiting == 5)
        runs.release.set()
        assert first.result(timeout=10) == 0
        for n, future in others.items():
            if n % 2:
                with pytest.raises(ValueError, match=f"bad {n}"):
                    future.result(timeout=10)
            else:
                assert future.result(timeout=10) == n


def test_a_failing_run_fails_its_batch_only() -> None:
    calls = []

    def run(batch: list[int]) -> list[int]:
        calls.append(batch)
        if len(calls) == 1:
            raise ConnectionError("lost")
        return batch

    combiner = Combiner(run, max_batch=8)
    with pytest.raises(ConnectionError):
        combiner(1)
    assert combiner(2) == 2


class Interrupted(BaseException):
    """What gevent's Timeout or a greenlet's kill raises in a waiting caller."""


class InterruptibleWake(threading.Event):
    """A caller's wake-up that the test can hold back (the caller does not see it yet) and
    interrupt."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False
        self.held = False

    def wait(self, timeout: float | None = None) -> bool:
        while True:
            if self.interrupted:
                raise Interrupted
            if super().wait(0.001) and not self.held:
                return True


class InterruptibleSlot(group_commit._Slot[Any, Any]):
    def __init__(self, item: Any) -> None:
        super().__init__(item)
        self.wake = InterruptibleWake()


@pytest.mark.parametrize("handed_the_lead", [False, True])
def test_a_waiting_caller_interrupted_neither_runs_nor_blocks_the_others(monkeypatch, handed_the_lead) -> None:
    monkeypatch.setattr(group_commit, "_Slot", InterruptibleSlot)
    runs = HeldRuns()
    combiner = Combiner(runs, max_batch=64)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(combiner, 0)
        _wait_for(lambda: combiner.batches == 0 and combiner.waiting == 0 and combiner._busy)
        doomed = pool.submit(combiner, 1)
        _wait_for(lambda: combiner.waiting == 1)
        later = pool.submit(combiner, 2)
        _wait_for(lambda: combiner.waiting == 2)
        doomed_slot = combiner._waiting[0]
        if handed_the_lead:
            # The first batch ends and passes the lead to the doomed caller, which is interrupted
            # before it takes it.
            doomed_slot.wake.held = True
            runs.release.set()
            assert first.result(timeout=10) == 0
            _wait_for(lambda: doomed_slot.lead)
        doomed_slot.wake.interrupted = True
        with pytest.raises(Interrupted):
            doomed.result(timeout=10)
        runs.release.set()
        assert first.result(timeout=10) == 0 and later.result(timeout=10) == 20
    assert runs.batches == [[0], [2]]
    assert combiner(3) == 30  # and nobody is left holding the lead


def test_a_batch_answered_with_the_wrong_number_of_outcomes_fails_every_member_and_nobody_hangs() -> None:
    runs = HeldRuns()
    combiner = Combiner(lambda batch: runs(batch)[:-1] if len(batch) > 1 else runs(batch), max_batch=64)
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(combiner, 0)
        _wait_for(lambda: combiner._busy and combiner.waiting == 0)
        others = [pool.submit(combiner, n) for n in range(1, 5)]
        _wait_for(lambda: combiner.waiting == 4)
        runs.release.set()
        assert first.result(timeout=10) == 0
        for future in others:
            with pytest.raises(RuntimeError, match="a batch of 4 was answered 3 times"):
                future.result(timeout=10)
    assert combiner(9) == 90


def test_a_caller_no_batch_takes_in_time_gives_up_and_leaves_the_queue() -> None:
    class Unavailable(Exception):
        pass

    runs = HeldRuns()
    combiner = Combiner(runs, max_batch=64, wait_timeout=0.05, unavailable=Unavailable)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(combiner, 0)
        _wait_for(lambda: combiner._busy and combiner.waiting == 0)
        late = pool.submit(combiner, 1)
        with pytest.raises(Unavailable, match="no batch took this call"):
            late.result(timeout=10)
        assert combiner.waiting == 0
        runs.release.set()
        assert first.result(timeout=10) == 0
    assert runs.batches == [[0]]


def test_when_the_leader_is_killed_its_batch_mates_are_told_their_outcome_is_unknown() -> None:
    class Unavailable(Exception):
        pass

    class Killed(BaseException):
        pass

    release = threading.Event()
    batches: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        batches.append(batch)
        if len(batches) == 1:
            release.wait(10)
        if len(batches) == 2:
            raise Killed  # the second batch's leader is killed inside its run
        return batch

    combiner = Combiner(run, max_batch=64, unavailable=Unavailable)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(combiner, 0)
        _wait_for(lambda: combiner._busy and combiner.waiting == 0)
        others = [pool.submit(combiner, n) for n in range(1, 4)]
        _wait_for(lambda: combiner.waiting == 3)
        release.set()
        assert first.result(timeout=10) == 0
        with pytest.raises(Killed):
            others[0].result(timeout=10)
        for future in others[1:]:
            with pytest.raises(Unavailable, match="interrupted"):
                future.result(timeout=10)
    assert combiner(7) == 7  # the lead passed on
