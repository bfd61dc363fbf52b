"""Settings read once from environment variables into a frozen object and passed down.

Every variable is documented in `.env.example` and the README's configuration table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from domain.lifecycle import RetryHold
from domain.refunds import RefundPolicy


class ConfigurationError(Exception):
    """The environment does not describe a process that can start."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or choices[0]
    if raw not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _address(env: Mapping[str, str], name: str) -> tuple[str, int] | None:
    """`host:port` (an IPv6 host in brackets), or None when the variable is empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"{name} must be host:port (e.g. 0.0.0.0:9100), got {raw!r}")
    return host.strip("[]"), int(port)
def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "true", "false", "1", "0"):
        raise ConfigurationError(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1")


def sqlalchemy_url(database_url: str) -> str:
    """Map the usual `postgresql://` / `postgres://` forms onto the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    return database_url


def _broker_url(env: Mapping[str, str]) -> str:
    raw = env.get("BROKER_URL", "").strip()
    if raw and not raw.startswith(("amqp://", "amqps://")):
        raise ConfigurationError(f"BROKER_URL must be an amqp:// URL (RabbitMQ) or unset (Redis), got {raw!r}")
    return raw


#: Where Stripe Checkout sends the customer back when nothing is configured (a local front end).
DEFAULT_CHECKOUT_RETURN_URL = "http://localhost:8000/checkout/return"


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    #: `amqp://...` puts the queues on RabbitMQ; empty keeps them on Redis at `redis_url`.
    #: Redis is needed either way (rate limits, dead letters' reasons).
    broker_url: str = ""
    stripe_api_key: str = "sk_test_local"
    stripe_api_base: str | None = None
    stripe_webhook_secret: str = ""
    #: Stripe requests per second, all worker processes together (adapters.stripe_budget); 0: no pacing.
    #: Stripe allows 100 in live mode and 25 in test mode: leave room for everything else on the account.
    stripe_max_requests_per_second: int = 25
    environment: str = "development"
    broker_namespace: str = "bookings"
    hold_ttl: timedelta = timedelta(seconds=900)
    payment_retry_window: timedelta = timedelta(seconds=600)
    max_hold: timedelta = timedelta(seconds=3600)
    idempotency_key_ttl: timedelta = timedelta(seconds=86400)
    archive_after: timedelta = timedelta(days=30)
    refund_policy: RefundPolicy = field(default_factory=RefundPolicy.default)
    lock_timeout_ms: int = 2000
    max_body_bytes: int = 64 * 1024
    db_pool_size: int = 10
    # A dead worker's unacknowledged messages come back once its heartbeat is this stale.
    broker_heartbeat_timeout_ms: int = 15_000
    # Chance, out of a million broker commands, of running the requeue-dead-workers pass.
    broker_maintenance_chance: int = 10_000
    outbox_relay_after: timedelta = timedelta(seconds=30)
    # Also how long a booking whose worker died mid-call waits: short enough that it settles
    # within 30 s of the death; the worker's Stripe timeout is derived from it.
    payment_step_lease: timedelta = timedelta(seconds=20)
    reconcile_after: timedelta = timedelta(seconds=120)
    expire_every_seconds: int = 60
    relay_every_seconds: int = 5
    reconcile_every_seconds: int = 180
    audit_every_seconds: int = 300
    purge_every_seconds: int = 3600
    guard_every_seconds: int = 3600
    #: Stripe voids a card authorization after 7 days; act on ours well before.
    authorization_guard_after: timedelta = timedelta(days=6.5)
    authorization_guard_action: str = "cancel"
    archive_at_hour: int = 3
    #: `writes=50/second;reads=200/second;webhooks=500/second;anonymous=20/second`; see api.protection.
    rate_limits: str = ""
    #: A header the proxy in front of the API sets to the client's address (X-Forwarded-For):
    #: per-address limits then use its last address. Empty: the peer's address, trusting no header.
    trusted_proxy_header: str = ""
    #: The front end's page that Stripe Checkout sends the customer back to.
    checkout_return_url: str = DEFAULT_CHECKOUT_RETURN_URL
    #: Origins allowed to call the API from a browser; none unless configured.
    cors_allowed_origins: tuple[str, ...] = ()
    #: A client must send a request's line and headers within this long, and its body within the
    #: next deadline, or the connection is cut (api.gunicorn_worker): slow clients hold nothing.
    request_header_timeout_seconds: float = 10.0
    request_body_timeout_seconds: float = 30.0
    #: Where the web process serves /metrics without a key, on a listener of its own; unset,
    #: /metrics is on the API's port and needs an operator key.
    metrics_bind: tuple[str, int] | None = None
    #: Where each `bookings worker` serves Dramatiq's metrics; unset, it serves none.
    worker_metrics_bind: tuple[str, int] | None = None
    #: Webhook endpoints may be on loopback or private addresses (development and tests only).
    webhook_allow_private_urls: bool = False
    #: `smtp://[user:password@]host:port` (`smtps://` for TLS from the start); None: no emails.
    smtp_url: str | None = None
    email_from: str = "Bookings <bookings@localhost>"
    notify_every_seconds: int = 2

    @property
    def retry_hold(self) -> RetryHold:
        return RetryHold(self.payment_retry_window, self.max_hold)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, require_redis: bool = True) -> Settings:
        """`require_redis=False` for commands that never touch Redis (migrate, seed, clients)."""
        env = os.environ if env is None else env
        database_url = env.get("DATABASE_URL", "").strip()
        redis_url = env.get("REDIS_URL", "").strip()
        if not database_url:
            raise ConfigurationError("DATABASE_URL is not set (e.g. postgresql://user@host:5432/db)")
        if not redis_url and require_redis:
            raise ConfigurationError("REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")
        policy_spec = env.get("REFUND_POLICY", "").strip()
        settings = cls(
            database_url=database_url,
            redis_url=redis_url,
            broker_url=_broker_url(env),
            stripe_api_key=env.get("STRIPE_API_KEY", "").strip() or "sk_test_local",
            stripe_api_base=env.get("STRIPE_API_BASE", "").strip() or None,
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET", "").strip(),
            stripe_max_requests_per_second=_int(env, "STRIPE_MAX_REQUESTS_PER_SECOND", 25),
            environment=env.get("BOOKINGS_ENV", "development").strip() or "development",
            broker_namespace=env.get("BROKER_NAMESPACE", "bookings").strip() or "bookings",
            hold_ttl=timedelta(seconds=_int(env, "BOOKING_HOLD_TTL_SECONDS", 900)),
            payment_retry_window=timedelta(
                seconds=_int(env, "PAYMENT_RETRY_WINDOW_SECONDS", 600)
            ),
            max_hold=timedelta(seconds=_int(env, "BOOKING_MAX_HOLD_SECONDS", 3600)),
            idempotency_key_ttl=timedelta(seconds=_int(env, "IDEMPOTENCY_KEY_TTL_SECONDS", 86400)),
            archive_after=timedelta(days=_float(env, "ARCHIVE_AFTER_DAYS", 30)),
            refund_policy=RefundPolicy.parse(policy_spec) if policy_spec else RefundPolicy.default(),
            lock_timeout_ms=_int(env, "DB_LOCK_TIMEOUT_MS", 2000),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 64 * 1024),
            db_pool_size=_int(env, "DB_POOL_SIZE", 10),
            broker_heartbeat_timeout_ms=_int(env, "BROKER_HEARTBEAT_TIMEOUT_MS", 15_000),
            broker_maintenance_chance=_int(env, "BROKER_MAINTENANCE_CHANCE", 10_000),
            outbox_relay_after=timedelta(seconds=_int(env, "OUTBOX_RELAY_AFTER_SECONDS", 30)),
            payment_step_lease=timedelta(seconds=_int(env, "PAYMENT_STEP_LEASE_SECONDS", 20)),
            reconcile_after=timedelta(seconds=_int(env, "RECONCILE_AFTER_SECONDS", 120)),
            expire_every_seconds=_int(env, "SCHEDULE_EXPIRE_SECONDS", 60),
            relay_every_seconds=_int(env, "SCHEDULE_RELAY_SECONDS", 5),
            reconcile_every_seconds=_int(env, "SCHEDULE_RECONCILE_SECONDS", 180),
            audit_every_seconds=_int(env, "SCHEDULE_AUDIT_SECONDS", 300),
            purge_every_seconds=_int(env, "SCHEDULE_PURGE_SECONDS", 3600),
            guard_every_seconds=_int(env, "SCHEDULE_AUTHORIZATION_GUARD_SECONDS", 3600),
            authorization_guard_after=timedelta(
                seconds=_int(env, "AUTHORIZATION_GUARD_AFTER_SECONDS", int(6.5 * 86400))
            ),
            authorization_guard_action=_choice(env, "AUTHORIZATION_GUARD_ACTION", ("cancel", "capture")),
            archive_at_hour=_int(env, "SCHEDULE_ARCHIVE_HOUR", 3),
            rate_limits=env.get("RATE_LIMITS", "").strip(),
            trusted_proxy_header=env.get("TRUSTED_PROXY_HEADER", "").strip(),
            checkout_return_url=env.get("CHECKOUT_RETURN_URL", "").strip() or DEFAULT_CHECKOUT_RETURN_URL,
            cors_allowed_origins=tuple(
                origin.strip() for origin in env.get("CORS_ALLOWED_ORIGINS", "").split(",") if origin.strip()
            ),
            request_header_timeout_seconds=_float(env, "REQUEST_HEADER_TIMEOUT_SECONDS", 10.0),
            request_body_timeout_seconds=_float(env, "REQUEST_BODY_TIMEOUT_SECONDS", 30.0),
            metrics_bind=_address(env, "METRICS_BIND"),
            worker_metrics_bind=_address(env, "WORKER_METRICS_BIND"),
            webhook_allow_private_urls=_flag(env, "WEBHOOK_ALLOW_PRIVATE_URLS"),
            smtp_url=env.get("SMTP_URL", "").strip() or None,
            email_from=env.get("EMAIL_FROM", "").strip() or "Bookings <bookings@localhost>",
            notify_every_seconds=_int(env, "SCHEDULE_NOTIFICATIONS_SECONDS", 2),
        )
        settings.check()
        return settings

    @property
    def uses_rabbitmq(self) -> bool:
        return self.broker_url.startswith(("amqp://", "amqps://"))

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def check(self) -> None:
        """Refuse to run production with test credentials or without webhook verification."""
        if not self.is_production:
            return
        if not self.stripe_api_key.startswith(("sk_live_", "rk_live_")):
            raise ConfigurationError("BOOKINGS_ENV=production needs a live STRIPE_API_KEY")
        if not self.stripe_webhook_secret:
            raise ConfigurationError("BOOKINGS_ENV=production needs STRIPE_WEBHOOK_SECRET")
        if self.stripe_api_base:
            raise ConfigurationError("BOOKINGS_ENV=production must talk to Stripe itself")
        if self.webhook_allow_private_urls:
            raise ConfigurationError("BOOKINGS_ENV=production must not send webhooks to private addresses")

    @property
    def sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.database_url)
