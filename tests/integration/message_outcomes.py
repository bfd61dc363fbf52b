"""What a test's workers ran into: the symptoms a retry would hide.

Dramatiq retries a message whose actor raised, so a deadlock or a unique-constraint violation
in a race ends as a retry and the booking still reaches the right state: a test that looks only
at final states stays green. `MessageOutcomes` is a middleware that keeps every exception an
actor raised, with PostgreSQL's error code when there is one, for the test to assert on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from sqlalchemy import Engine, text

#: PostgreSQL error codes (SQLSTATE) a race can end in.
UNIQUE_VIOLATION = "23505"
EXCLUSION_VIOLATION = "23P01"
DEADLOCK_DETECTED = "40P01"
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout


@dataclass(frozen=True)
class Failure:
    """One run of a message that raised: Dramatiq retries it, or dead-letters it."""

    actor: str
    message_id: str
    error: str
    sqlstate: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.actor} {self.message_id}: {self.error} [{self.sqlstate}] {self.detail[:200]}"


class MessageOutcomes(Middleware):
    """Keeps the exceptions actors raised (an explicit `dramatiq.Retry` included) and the
    messages skipped, so a test can say that nothing was retried."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[Failure] = []

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is not None:
            self._record(message, exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._record(message, RuntimeError("skipped (age limit)"))

    def _record(self, message: Any, exception: BaseException) -> None:
        failure = Failure(
            message.actor_name, message.message_id, type(exception).__name__,
            _sqlstate(exception), str(exception),
        )
        with self._lock:
            self._failures.append(failure)

    @property
    def failures(self) -> list[Failure]:
        with self._lock:
            return list(self._failures)

    def with_sqlstate(self, *codes: str) -> list[Failure]:
        return [failure for failure in self.failures if failure.sqlstate in codes]

    def other_than(self, *errors: type[BaseException]) -> list[Failure]:
        names = {error.__name__ for error in errors}
        return [failure for failure in self.failures if failure.error not in names]


def _sqlstate(exception: BaseException) -> str | None:
    """The SQLSTATE of a database error, wrapped by SQLAlchemy (`.orig`) or not."""
    original = getattr(exception, "orig", exception)
    return getattr(original, "sqlstate", None)


def deadlocks_counted(engine: Engine) -> int:
    """PostgreSQL's count of deadlocks detected in this database.

    Each backend reports its statistics at the end of a transaction at most once a second, or
    when it next goes idle: a deadlock shows here up to about a second later, so wait for a rise
    rather than compare at once (and never assert that it stayed put: another test's deadlock may
    be reported late).
    """
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(connection.scalar(text(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )) or 0)
