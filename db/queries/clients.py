"""API clients and their keys. Only a SHA-256 of each key is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from db.models import Client

KEY_PREFIX = "bk_"


def hash_key(api_key: str) -> str:
    # Keys carry 256 bits of entropy, so a fast hash is enough; a slow KDF buys nothing here.
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    client_id: uuid.UUID
    name: str
    role: str

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def create_client(session: Session, name: str, *, operator: bool = False) -> tuple[Client, str]:
    """Create a client and return its key; the key is never stored or shown again."""
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    client = Client(
        name=name,
        role="operator" if operator else "client",
        key_prefix=api_key[:10],
        key_hash=hash_key(api_key),
    )
    session.add(client)
    session.flush()
    return client, api_key


def authenticate(session: Session, api_key: str) -> Principal | None:
    client = session.scalars(
        select(Client).where(Client.key_hash == hash_key(api_key), Client.revoked_at.is_(None))
    ).one_or_none()
    if client is None:
        return None
    return Principal(client.id, client.name, client.role)


def revoke_client(session: Session, client_id: uuid.UUID, now: datetime) -> bool:
    # An UPDATE without RETURNING answers with a CursorResult; Session.execute is typed for any statement.
    result = cast(CursorResult[Any], session.execute(
        update(Client).where(Client.id == client_id, Client.revoked_at.is_(None)).values(revoked_at=now)
    ))
    return bool(result.rowcount)
