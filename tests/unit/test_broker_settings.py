"""BROKER_URL chooses the broker: amqp:// is RabbitMQ, unset keeps Redis."""

from __future__ import annotations

import pytest

from config.settings import ConfigurationError, Settings

BASE = {"DATABASE_URL": "postgresql://db/bookings", "REDIS_URL": "redis://cache:6379/0"}


def test_without_broker_url_the_queues_stay_on_redis():
    assert not Settings.from_env(BASE).uses_rabbitmq


def test_an_amqp_broker_url_selects_rabbitmq():
    settings = Settings.from_env({**BASE, "BROKER_URL": "amqp://guest:guest@mq:5672/%2F"})
    assert settings.uses_rabbitmq and settings.broker_url.startswith("amqp://")


def test_a_broker_url_of_another_kind_is_refused():
    with pytest.raises(ConfigurationError, match="BROKER_URL"):
        Settings.from_env({**BASE, "BROKER_URL": "kafka://mq:9092"})
