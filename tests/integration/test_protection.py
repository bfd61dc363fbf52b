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
        settings, rate_limits="writes=5/second;reads=1000/second;webhooks=3/second;anonymous=20/second",
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


def test_readyz_is_limited_per_address(app):
    answers = [app.simulate_get("/readyz", remote_addr="192.0.2.0").status_code for _ in range(22)]
    assert answers[:20] == [200] * 20 and answers[-1] == 429
    assert app.simulate_get("/readyz", remote_addr="192.0.2.99").status_code == 200


def test_a_bad_key_costs_its_address_more_than_a_missing_one(app, api):
    assert api.get("/v1/events").status_code == 200  # a key in use: known to the API for a few seconds
    bad = {"Authorization": "Bearer not-a-key"}
    # anonymous=20/second: two failed authentications (10 each) spend the budget.
    answers = [app.simulate_get("/v1/events", headers=bad, remote_addr="192.0.2.20").status_code for _ in range(3)]
    assert answers == [401, 401, 429]
    missing = [app.simulate_get("/v1/events", remote_addr="192.0.2.21").status_code for _ in range(20)]
    assert missing == [401] * 20
    # A key in use is still served from the refused address: it costs the address nothing.
    assert app.simulate_get("/v1/events", headers=api.auth(), remote_addr="192.0.2.20").status_code == 200


def test_the_client_address_comes_from_the_trusted_proxy_header_only_when_configured(runtime, settings):
    from api.app import create_app

    def client(header: str) -> falcon.testing.TestClient:
        ctx = dataclasses.replace(runtime.context, settings=dataclasses.replace(settings, trusted_proxy_header=header))
        return falcon.testing.TestClient(create_app(ctx, redis_client=redis.Redis.from_url(settings.redis_url)))

    def statuses(app: falcon.testing.TestClient, forwarded_for: str) -> list[int]:
        headers = {"Authorization": "Bearer bad", "X-Forwarded-For": forwarded_for}
        return [app.simulate_get("/v1/events", headers=headers, remote_addr="10.0.0.1").status_code
                for _ in range(3)]

    behind_proxy = client("X-Forwarded-For")
    assert statuses(behind_proxy, "198.51.100.1, 203.0.113.1") == [401, 401, 429]
    # The last address is the one the proxy saw: what the client wrote before it is not trusted.
    assert statuses(behind_proxy, "198.51.100.1, 203.0.113.2") == [401, 401, 429]
    # Without the setting, the header is ignored: whatever it says, every request is the peer's.
    direct = client("")
    assert statuses(direct, "203.0.113.3") == [401, 401, 429]
    assert statuses(direct, "203.0.113.4") == [429, 429, 429]
