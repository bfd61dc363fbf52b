"""Stripe webhook deliveries as Stripe makes them: an event envelope and its signature."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any


def stripe_event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """An event in Stripe's envelope around a real object read from the local Stripe server."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "type": event_type,
        "api_version": "2025-01-27", "created": int(time.time()), "livemode": False,
        "data": {"object": obj},
    }


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """A Stripe-Signature header, computed the way Stripe does (the SDK has no signing helper)."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"
