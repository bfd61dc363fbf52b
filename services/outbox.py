"""The transactional outbox: a message is staged in the transaction of the change that causes
it, sent after commit, and deleted once a worker has run it. The relay re-sends whatever is
still there after a while (the API died before sending, or Redis lost it)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.engine import transaction
from db.models import OutboxMessage


@dataclass(frozen=True)
class StagedMessage:
    """A message to send; `id` becomes the Dramatiq message id, so its ack can find the row."""

    id: uuid.UUID
    queue_name: str
    actor_name: str
    args: tuple[Any, ...]
    options: dict[str, Any] = field(default_factory=dict)


def outbox_message(
    route: tuple[str, str], *args: Any, **options: Any
) -> tuple[StagedMessage, OutboxMessage]:
    """A message to send and the outbox row that keeps it until a worker has run it."""
    queue_name, actor_name = route
    message = StagedMessage(uuid.uuid4(), queue_name, actor_name, tuple(args), dict(options))
    row = OutboxMessage(
        id=message.id, queue_name=queue_name, actor_name=actor_name, args=list(args), options=message.options,
    )
    return message, row


def stage(
    session: Session, queue_name: str, actor_name: str, *args: Any, **options: Any
) -> StagedMessage:
    message, row = outbox_message((queue_name, actor_name), *args, **options)
    session.add(row)
    return message


def acknowledge(session: Session, message_ids: Sequence[uuid.UUID]) -> None:
    session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(message_ids)))


def relay(
    sessions: sessionmaker[Session],
    dispatch: Callable[[Sequence[StagedMessage]], None],
    *,
    older_than: timedelta,
    now: datetime,
    busy_queues: Collection[str] = (),
    stale_after: timedelta = timedelta(minutes=10),
    batch_size: int = 500,
) -> int:
    """Re-send messages staged more than `older_than` ago and not re-sent within that time.

    A queue that still holds messages is busy working through a backlog that probably includes
    these: its rows are left alone until `stale_after`, so a backlog is not doubled by re-sends.
    Rows are claimed with SKIP LOCKED, so two relays running at once send each message once;
    sending twice is harmless anyway, every actor being idempotent.
    """
    cutoff = now - older_than
    due = OutboxMessage.created_at < cutoff
    if busy_queues:
        due = (due & OutboxMessage.queue_name.not_in(list(busy_queues))) | (
            OutboxMessage.created_at < now - stale_after
        )
    with transaction(sessions) as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(due)
            .where((OutboxMessage.relayed_at.is_(None)) | (OutboxMessage.relayed_at < cutoff))
            .order_by(OutboxMessage.created_at)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        ).all()
        messages = [
            StagedMessage(row.id, row.queue_name, row.actor_name, tuple(row.args), dict(row.options))
            for row in rows
        ]
        # Sending inside the transaction keeps the rows claimed until Redis has them.
        dispatch(messages)
        if rows:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([row.id for row in rows]))
                .values(relayed_at=now, relay_count=OutboxMessage.relay_count + 1)
            )
    return len(messages)
