"""Idempotency keys (SPEC §6): the first answer to a key is stored in the same transaction as
the change it describes, and replayed for a retry of the same request.

The key is written with its answer by the last statement of the command's transaction, so a
first request costs one statement for it. Two concurrent requests with one key serialize on
the key's primary key: the second INSERT waits for the first transaction to commit, finds the
key taken, rolls its own work back and replays the first answer.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.engine import transaction
from db.models import IdempotencyKey
from domain.errors import DomainError, IdempotencyKeyReused
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


class _KeyTaken(Exception):
    """Another transaction committed an answer to this key first."""


_RECORD_ANSWER = (
    insert(IdempotencyKey.__table__)
    .values(
        client_id=bindparam("client_id"), key=bindparam("key"), fingerprint=bindparam("fingerprint"),
        response_status=bindparam("status"), response_body=bindparam("body"),
        response_location=bindparam("location"),
    )
    .on_conflict_do_nothing()
    .returning(literal(1))
)


def execute_once(
    ctx: Context,
    *,
    client_id: uuid.UUID,
    key: str,
    request_fingerprint: str,
    command: Callable[[Session], Outcome],
) -> Reply:
    """Run `command` once per (client, key); a retry gets the stored reply.

    A retry may arrive after the state has moved on (a repeated cancel of a booking that has
    since expired, say): the command then refuses it, and the stored answer wins over the refusal.
    """
    try:
        with transaction(ctx.sessions) as session:
            outcome = command(session)
            reply = outcome.reply
            recorded = session.connection().execute(_RECORD_ANSWER, {
                "client_id": client_id, "key": key, "fingerprint": request_fingerprint,
                "status": reply.status, "body": reply.body, "location": reply.location,
            }).first()
            if recorded is None:
                raise _KeyTaken
    except (_KeyTaken, DomainError):
        stored = _stored_reply(ctx, client_id, key, request_fingerprint)
        if stored is None:
            raise
        return stored
    ctx.dispatch(outcome.messages)
    return outcome.reply


def _stored_reply(ctx: Context, client_id: uuid.UUID, key: str, request_fingerprint: str) -> Reply | None:
    with ctx.sessions() as session:
        stored = session.scalars(
            select(IdempotencyKey).where(IdempotencyKey.client_id == client_id, IdempotencyKey.key == key)
        ).one_or_none()
    if stored is None:
        return None
    if stored.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request", details={"key": key}
        )
    assert stored.response_status is not None and stored.response_body is not None
    return Reply(stored.response_status, stored.response_body, stored.response_location, replayed=True)


def purge_expired_keys(session: Session, older_than: datetime) -> int:
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than))
    return int(result.rowcount or 0)
