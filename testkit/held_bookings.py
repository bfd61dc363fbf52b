"""Make many held bookings fast, straight in SQL: the starting point of expiry measurements."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import stripe
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from db.engine import transaction
from db.queries.clients import create_client


def make_held_bookings(
    sessions: sessionmaker[Session], *, count: int, authorized: int, stripe_client: stripe.StripeClient | None,
    expired_at: datetime,
) -> list[uuid.UUID]:
    """`count` bookings holding one-minute slots of one resource, already past `expires_at`.

    The first `authorized` of them hold a real manual-capture PaymentIntent on the Stripe server.
    """
    with transaction(sessions) as session:
        client, _ = create_client(session, f"bench-{uuid.uuid4().hex[:6]}")
        resource_id, rate = session.execute(text("SELECT id, rate_per_minute FROM resources ORDER BY name LIMIT 1")).one()
        ids = [uuid.uuid4() for _ in range(count)]
        start = expired_at + timedelta(days=400)  # far from anything the demo catalog books
        session.execute(text(
            "INSERT INTO bookings (id, client_id, status, resource_id, total_amount, currency, payment_mode,"
            " capture_mode, payment_method, customer_email, expires_at, created_at, updated_at)"
            " SELECT b, :client, 'awaiting_payment', :resource, :rate, 'EUR', 'card', 'on_confirm',"
            " 'pm_card_visa', 'bench@example.com', :expired, :expired, :expired FROM unnest(:ids) AS b"
        ), {"client": client.id, "resource": resource_id, "rate": rate, "expired": expired_at, "ids": ids})
        session.execute(text(
            "INSERT INTO booking_items (booking_id, resource_id, period, price, holds_inventory)"
            " SELECT b, :resource, tstzrange(:start + (n * interval '1 minute'), :start + ((n + 1) * interval '1 minute')),"
            " :rate, true FROM unnest(:ids) WITH ORDINALITY AS t(b, n)"
        ), {"resource": resource_id, "rate": rate, "start": start, "ids": ids})
        session.execute(text(
            "INSERT INTO payments (booking_id, provider, status, amount_authorized, amount_captured,"
            " amount_refunded, attempt, updated_at) SELECT b, 'stripe', 'none', 0, 0, 0, 1, :expired"
            " FROM unnest(:ids) AS b"
        ), {"expired": expired_at, "ids": ids})
    for booking_id in ids[:authorized]:
        assert stripe_client is not None
        intent = stripe_client.v1.payment_intents.create(params={
            "amount": rate, "currency": "eur", "payment_method": "pm_card_visa", "capture_method": "manual",
            "confirm": True, "metadata": {"booking_id": str(booking_id)},
        })
        with transaction(sessions) as session:
            session.execute(text(
                "UPDATE payments SET status = 'authorized', intent_id = :pi, amount_authorized = :a,"
                " authorized_at = :t WHERE booking_id = :b"
            ), {"pi": intent.id, "a": rate, "t": expired_at, "b": booking_id})
            session.execute(text("UPDATE bookings SET status = 'authorized' WHERE id = :b"), {"b": booking_id})
    return ids
