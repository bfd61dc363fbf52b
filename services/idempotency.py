"""Idempotency keys (SPEC §6): the first answer to a key is stored in the same transaction as
the change it describes, and replayed for a retry of the same request.

The key is written together with its answer, by the last statement of the change, so a first
request pays one statement for it (the booking request pays none: its one statement writes the
key too). Two concurrent requests with one key serialize on the key's primary key: the second
INSERT waits for the first transaction, finds the key taken, drops its own work and replays
the first answer.
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


@dataclass(frozen=True)
class IdempotentRequest:
    """Who asked, under which key, and a fingerprint of what they sent."""

    client_id: uuid.UUID
    key: str
    fingerprint: str

    def answer_row(self, reply: Reply) -> dict[str, Any]:
        """The key's row with `reply` as its answer (parameters of the statements that write it)."""
        return {
            "client_id": self.client_id, "key": self.key, "fingerprint": self.fingerprint,
            "status": reply.status, "body": reply.body, "location": reply.location,
        }


def fingerprint(method: str, path: str, body: Any) -> str:
    # The stdlib's encoding on purpose: stored fingerprints must not change with a JSON library.
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class KeyTaken(Exception):
    """Another request committed an answer to this key first; this one's work was not kept."""


def answer_once(ctx: Context, request: IdempotentRequest, attempt: Callable[[], Outcome]) -> Reply:
    """Run `attempt` (which records the key with its answer, or raises KeyTaken) once per key.

    A retry may arrive after the state has moved on (a repeated cancel of a booking that has
    since expired, say): the attempt then refuses it, and the stored answer wins over the refusal.
    """
    try:
        outcome = attempt()
    except (KeyTaken, DomainError):
        stored = stored_reply(ctx, request)
        if stored is None:
            raise
        return stored
    ctx.dispatch(outcome.messages)
    return outcome.reply


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


def execute_once(ctx: Context, request: IdempotentRequest, command: Callable[[Session], Outcome]) -> Reply:
    """Run `command` in one transaction, once per key; a retry gets the stored reply."""

    def attempt() -> Outcome:
        with transaction(ctx.sessions) as session:
            outcome = command(session)
            recorded = session.connection().execute(_RECORD_ANSWER, request.answer_row(outcome.reply)).first()
            if recorded is None:
                raise KeyTaken  # rolls the command's work back
        return outcome

    return answer_once(ctx, request, attempt)


def stored_reply(ctx: Context, request: IdempotentRequest) -> Reply | None:
    with ctx.sessions() as session:
        stored = session.scalars(
            select(IdempotencyKey)
            .where(IdempotencyKey.client_id == request.client_id, IdempotencyKey.key == request.key)
        ).one_or_none()
    if stored is None:
        return None
    if stored.fingerprint != request.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request", details={"key": request.key}
        )
    assert stored.response_status is not None and stored.response_body is not None
    return Reply(stored.response_status, stored.response_body, stored.response_location, replayed=True)


def purge_expired_keys(session: Session, older_than: datetime) -> int:
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than))
    return int(result.rowcount or 0)
