"""Idempotency keys: the first answer to a key is stored in the same transaction as
the change it describes, and replayed for a retry of the same request.

Two ways to keep that promise, each where it is cheapest:

- `execute_once` (confirm, cancel, payment retry) claims the key first: a retry or a concurrent
  twin waits on the key's primary key, finds it taken and replays the stored answer without
  touching the booking (its row lock may be held by a worker for a while).
- `answer_once` (the booking request) writes the key with its answer in the one statement that
  records the booking, each part only if the key was free. That statement locks no row but
  the key's, so a twin waits only for the first request's commit, then replays.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, delete, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import IdempotencyKey
from db.unit_of_work import UnitOfWork
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
        """The key's row with `reply` as its answer, as parameters of the statements that write it
        (prefixed `key_`: they sit beside a booking's own `client_id` and `status`)."""
        return {
            "key_client_id": self.client_id, "key_key": self.key, "key_fingerprint": self.fingerprint,
            "key_status": reply.status, "key_body": reply.body, "key_location": reply.location,
        }


def fingerprint(method: str, path: str, body: Any) -> str:
    # The stdlib's encoding on purpose: stored fingerprints must not change with a JSON library.
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class KeyTaken(Exception):
    """Another request committed an answer to this key first; this one wrote nothing."""


def answer_once(ctx: Context, request: IdempotentRequest, attempt: Callable[[], Outcome]) -> Reply:
    """Run `attempt`, which writes the key with its answer or raises KeyTaken, once per key.

    A retry may arrive after the state has moved on (the catalog changed since the first
    request): the attempt then refuses it, and the stored answer wins over the refusal.
    """
    for _ in range(2):
        try:
            outcome = attempt()
        except (KeyTaken, DomainError) as refusal:
            stored = stored_reply(ctx, request)
            if stored is not None:
                return stored
            if isinstance(refusal, DomainError):
                raise
            # Taken, yet gone by now (purged past its TTL between the two reads): the key is free again.
            continue
        ctx.dispatch(outcome.messages)
        return outcome.reply
    raise RuntimeError(f"idempotency key {request.key!r} neither free nor answered")


_CLAIM_KEY = (
    insert(IdempotencyKey.__table__)
    .values(client_id=bindparam("client_id"), key=bindparam("key"), fingerprint=bindparam("fingerprint"))
    .on_conflict_do_nothing()
    .returning(literal(1))
)
_RECORD_ANSWER = (
    update(IdempotencyKey.__table__)
    .where(IdempotencyKey.client_id == bindparam("key_client_id"), IdempotencyKey.key == bindparam("key_key"))
    .values(response_status=bindparam("key_status"), response_body=bindparam("key_body"),
            response_location=bindparam("key_location"))
)


def execute_once(ctx: Context, request: IdempotentRequest, command: Callable[[UnitOfWork], Outcome]) -> Reply:
    """Run `command` in one unit of work, once per key; a retry gets the stored reply."""
    with UnitOfWork(ctx.sessions) as uow:
        session = uow.session
        connection = session.connection()
        claim = {"client_id": request.client_id, "key": request.key, "fingerprint": request.fingerprint}
        while connection.execute(_CLAIM_KEY, claim).first() is None:
            # Taken: the INSERT waited for its transaction, so its answer is committed and visible.
            stored = _stored(session, request)
            if stored is not None:
                return stored
            # Purged past its TTL between the two statements: the key is free again.
        outcome = command(uow)
        reply = outcome.reply
        connection.execute(_RECORD_ANSWER, request.answer_row(reply))
        uow.commit()
    ctx.dispatch(outcome.messages)
    return reply


def stored_reply(ctx: Context, request: IdempotentRequest) -> Reply | None:
    with ctx.sessions() as session:
        return _stored(session, request)


def _stored(session: Session, request: IdempotentRequest) -> Reply | None:
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
    # A DELETE without RETURNING answers with a CursorResult; Session.execute is typed for any statement.
    statement = delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than)
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount
