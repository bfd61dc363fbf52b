"""Idempotency keys (SPEC §6): the first answer to a key is stored in the same transaction as
the change it describes, and replayed for a retry of the same request.

Two concurrent requests with one key serialize on the key's primary key: the second INSERT
waits for the first transaction, then finds its row and replays its answer.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.engine import transaction
from db.models import IdempotencyKey
from domain.errors import IdempotencyKeyReused
from services.context import Context
from services.outbox import StagedMessage


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    location: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class Outcome:
    """What a command did: its answer, and the messages to send once it is committed."""

    reply: Reply
    messages: Sequence[StagedMessage] = ()


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def execute_once(
    ctx: Context,
    *,
    client_id: uuid.UUID,
    key: str,
    request_fingerprint: str,
    command: Callable[[Session], Outcome],
) -> Reply:
    """Run `command` once per (client, key); a retry gets the stored reply."""
    with transaction(ctx.sessions) as session:
        claimed = session.execute(
            insert(IdempotencyKey)
            .values(client_id=client_id, key=key, fingerprint=request_fingerprint)
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.key)
        ).first()
        if claimed is None:
            return _replay(session, client_id, key, request_fingerprint)
        outcome = command(session)
        session.execute(
            IdempotencyKey.__table__.update()
            .where(IdempotencyKey.client_id == client_id, IdempotencyKey.key == key)
            .values(
                response_status=outcome.reply.status,
                response_body=outcome.reply.body,
                response_location=outcome.reply.location,
            )
        )
    ctx.dispatch(outcome.messages)
    return outcome.reply


def _replay(session: Session, client_id: uuid.UUID, key: str, request_fingerprint: str) -> Reply:
    stored = session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.client_id == client_id, IdempotencyKey.key == key)
    ).one()
    if stored.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request", details={"key": key}
        )
    assert stored.response_status is not None and stored.response_body is not None
    return Reply(stored.response_status, stored.response_body, stored.response_location, replayed=True)


def purge_expired_keys(session: Session, older_than: datetime) -> int:
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than))
    return int(result.rowcount or 0)
