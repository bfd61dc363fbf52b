"""A client's webhook endpoints: register (the secret shown once), list, delete, read the
delivery log, retry a delivery. Each client sees and touches only its own."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from adapters.webhooks import Resolver, check_url, system_resolver
from db.engine import transaction
from db.models import Client, NotificationEvent, WebhookDelivery, WebhookEndpoint
from domain.errors import EndpointLimitReached, NotFound
from domain.notifications import MAX_ENDPOINTS_PER_CLIENT, DeliveryStatus
from services.context import Context


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def register_endpoint(
    ctx: Context, client_id: uuid.UUID, url: str, events: Sequence[str], *, resolve: Resolver = system_resolver,
) -> WebhookEndpoint:
    """A new endpoint with its secret (which is only ever shown in this answer)."""
    settings = ctx.settings
    check_url(url, allow_private=settings.webhook_allow_private_urls, https_only=settings.is_production,
              resolve=resolve)
    with transaction(ctx.sessions) as session:
        # The client's row serializes registrations, so two at once cannot both be the 21st.
        session.execute(select(Client.id).where(Client.id == client_id).with_for_update())
        count = session.scalar(select(func.count()).where(WebhookEndpoint.client_id == client_id)) or 0
        if count >= MAX_ENDPOINTS_PER_CLIENT:
            raise EndpointLimitReached(
                f"a client may have {MAX_ENDPOINTS_PER_CLIENT} webhook endpoints; delete one first",
                details={"limit": MAX_ENDPOINTS_PER_CLIENT},
            )
        endpoint = WebhookEndpoint(client_id=client_id, url=url, events=sorted(set(events)), secret=new_secret(),
                                   created_at=ctx.clock())
        session.add(endpoint)
        session.flush()
        session.expunge(endpoint)
        return endpoint


def list_endpoints(ctx: Context, client_id: uuid.UUID) -> list[WebhookEndpoint]:
    with ctx.sessions() as session:
        return list(session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.client_id == client_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        ))


def delete_endpoint(ctx: Context, client_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    """Delete an endpoint and its deliveries (pending ones are never sent)."""
    with transaction(ctx.sessions) as session:
        deleted = session.execute(
            delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.client_id == client_id)
            .returning(WebhookEndpoint.id)
        ).first()
    if deleted is None:
        raise NotFound("no such webhook endpoint")


@dataclass(frozen=True)
class DeliveryEntry:
    id: uuid.UUID
    event_id: str
    type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime


def delivery_log(ctx: Context, client_id: uuid.UUID, endpoint_id: uuid.UUID, limit: int) -> list[DeliveryEntry]:
    """The endpoint's deliveries, newest first."""
    with ctx.sessions() as session:
        _own_endpoint(session, client_id, endpoint_id)
        rows = session.execute(
            select(WebhookDelivery, NotificationEvent.type)
            .join(NotificationEvent, NotificationEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(limit)
        ).all()
    return [
        DeliveryEntry(
            d.id, d.event_id, event_type, d.status, d.attempts, d.last_status_code, d.last_error,
            d.next_attempt_at if d.status == DeliveryStatus.PENDING else None, d.created_at,
        )
        for d, event_type in rows
    ]


def retry_delivery(ctx: Context, client_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> None:
    """Make a delivery due now, whatever became of it; a failure after three days ends it again."""
    with transaction(ctx.sessions) as session:
        _own_endpoint(session, client_id, endpoint_id)
        retried = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id)
            .values(status=DeliveryStatus.PENDING.value, next_attempt_at=ctx.clock(), finished_at=None)
            .returning(WebhookDelivery.id)
        ).first()
    if retried is None:
        raise NotFound("no such delivery")


def _own_endpoint(session: Session, client_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    found = session.scalar(
        select(WebhookEndpoint.id).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.client_id == client_id)
    )
    if found is None:
        raise NotFound("no such webhook endpoint")


# What the operators' console does for any client's endpoint.


def owner_of(ctx: Context, endpoint_id: uuid.UUID) -> tuple[uuid.UUID, str]:
    """The client an endpoint belongs to, and its URL."""
    with ctx.sessions() as session:
        found = session.execute(
            select(WebhookEndpoint.client_id, WebhookEndpoint.url).where(WebhookEndpoint.id == endpoint_id)
        ).first()
    if found is None:
        raise NotFound("no such webhook endpoint")
    return found[0], found[1]


def retry_failed_deliveries(ctx: Context, endpoint_id: uuid.UUID) -> int:
    """Make every delivery of the endpoint given up on due now (as a retry of each would)."""
    with transaction(ctx.sessions) as session:
        retried = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == DeliveryStatus.FAILED.value)
            .values(status=DeliveryStatus.PENDING.value, next_attempt_at=ctx.clock(), finished_at=None)
            .returning(WebhookDelivery.id)
        ).all()
    return len(retried)
