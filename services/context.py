"""What the services need from the process that runs them, passed in rather than imported."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from db.group_commit import GroupCommit
from domain.ports import PaymentGateway
from services.outbox import StagedMessage
from services.seat_sales import SeatSales


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Context:
    settings: Settings
    sessions: sessionmaker[Session]
    #: Sends messages to the broker; called only after the transaction that staged them commits.
    dispatch: Callable[[Sequence[StagedMessage]], None]
    #: The payment provider; workers have one, the API does not need it.
    gateway: PaymentGateway | None = None
    clock: Callable[[], datetime] = field(default=utc_now)
    #: What the accept path remembers of seated events, checked by the statement that records a booking.
    seat_sales: SeatSales = field(default_factory=SeatSales)

    @cached_property
    def group_commit(self) -> GroupCommit:
        """The accept path's writes of the moment, committed together (one per process)."""
        return GroupCommit(self.engine)

    def autocommit(self) -> Connection:
        """A connection whose every statement is its own transaction: for Core statements that
        need no unit of work."""
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    @property
    def engine(self) -> Engine:
        """The engine behind `sessions`, for work that needs no unit of work (plain Core statements)."""
        engine: Engine = self.sessions.kw["bind"]
        return engine

    def payments(self) -> PaymentGateway:
        if self.gateway is None:
            raise RuntimeError("this process was built without a payment gateway")
        return self.gateway
