"""Rate limits, security headers, CORS, and refusing to run production with test credentials."""

from __future__ import annotations

import dataclasses

import falcon.testing
import pytest
import redis

from config.settings import ConfigurationError, Settings
from tests.support import first_event, seat_request


@pytest.fixture
def settings(settings):
    return dataclasses.replace(
        settings, rate_limits="writes=5/second;reads=1000/second;webhooks=3/second",
        cors_allowed_origins=("https://shop.example",),
    )


def test_a_client_over_its_write_limit_gets_429_with_retry_after(api, other_api, runtime):
    event_id, seats = first_event(runtime.context.sessions)
    answers = [api.book(seat_request(event_id, [seat])) for seat in seats[:8]]
    limited = [a for a in answers if a.status_code == 429]
    assert [a.status_code for a in answers[:5]] == [202] * 5 and limited
    assert limited[0].json["error"]["code"] == "rate_limited"
    assert int(limited[0].headers["Retry-After"]) >= 1
    # Another client's budget is its own.
    assert other_api.book(seat_request(event_id, seats[20:21])).status_code == 202
    # Reads have their own, larger budget.
    assert api.get("/v1/events").status_code == 200


def test_webhooks_are_limited_per_source_address(app, runtime):
    answers = [app.simulate_post("/v1/webhooks/stripe", body=b"{}", headers={"Stripe-Signature": "t=1,v1=x"})
               for _ in range(6)]
    assert [a.status_code for a in answers[:3]] == [400] * 3
    assert answers[-1].status_code == 429


def test_every_answer_carries_security_headers(app, api):
    for result in (api.get("/v1/events"), app.simulate_get("/healthz"), app.simulate_get("/nope")):
        assert result.headers["X-Content-Type-Options"] == "nosniff"
        assert result.headers["X-Frame-Options"] == "DENY"
        assert result.headers["Cache-Control"] == "no-store"
    docs = app.simulate_get("/docs")
    assert "frame-ancestors 'none'" in docs.headers["Content-Security-Policy"]


def test_cors_answers_only_configured_origins(app, api):
    allowed = app.simulate_get("/v1/events", headers={**api.auth(), "Origin": "https://shop.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    other = app.simulate_get("/v1/events", headers={**api.auth(), "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_is_off_unless_configured(runtime, settings):
    from api.app import create_app

    ctx = dataclasses.replace(runtime.context, settings=dataclasses.replace(settings, cors_allowed_origins=()))
    plain = falcon.testing.TestClient(create_app(ctx, redis_client=redis.Redis.from_url(settings.redis_url)))
    answer = plain.simulate_get("/healthz", headers={"Origin": "https://shop.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STRIPE_API_KEY": "sk_test_123", "STRIPE_WEBHOOK_SECRET": "whsec_x"}, "live STRIPE_API_KEY"),
        ({"STRIPE_API_KEY": "sk_live_123"}, "STRIPE_WEBHOOK_SECRET"),
        ({"STRIPE_API_KEY": "sk_live_123", "STRIPE_WEBHOOK_SECRET": "whsec_x", "STRIPE_API_BASE": "http://x"},
         "Stripe itself"),
    ],
)
def test_production_refuses_test_credentials_with_a_clear_message(env, message):
    base = {"DATABASE_URL": "postgresql://x@y/z", "REDIS_URL": "redis://x", "BOOKINGS_ENV": "production"}
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({**base, **env})


def test_production_with_live_credentials_starts():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://x@y/z", "REDIS_URL": "redis://x",
                                  "BOOKINGS_ENV": "production", "STRIPE_API_KEY": "sk_live_123",
                                  "STRIPE_WEBHOOK_SECRET": "whsec_live_secret"})
    assert settings.is_production


def test_api_keys_are_stored_only_as_hashes(api, runtime):
    with runtime.context.sessions() as session:
        from sqlalchemy import text

        stored = session.execute(text("SELECT key_hash, key_prefix FROM clients")).all()
    assert all(api.key not in (key_hash, prefix) and len(key_hash) == 64 for key_hash, prefix in stored)
