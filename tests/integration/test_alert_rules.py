"""The shipped alert rules are valid and do what they say: `promtool check rules` and
`promtool test rules` (Debian's `prometheus` package; .ci/run installs it), and every metric
they ask for is one a process exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)")

#: What the API's /metrics serves (api/metrics.py) and, with WORKER_METRICS_BIND, the workers.
EXPORTED = {
    "http_requests_total", "http_request_duration_seconds_bucket", "stripe_webhook_events_rejected_total",
    "bookings", "bookings_queue_messages", "bookings_queue_latency_seconds", "bookings_outbox_messages",
    "bookings_outbox_oldest_age_seconds", "stripe_webhook_events_unapplied",
    "stripe_webhook_oldest_unapplied_age_seconds", "stripe_webhook_events_needing_attention",
    "bookings_payments_recent", "bookings_payments_stuck", "bookings_scheduler_leaders",
    "dramatiq_messages_total", "dramatiq_message_errors_total", "dramatiq_message_retries_total",
    "dramatiq_message_rejects_total", "dramatiq_messages_inprogress", "dramatiq_message_duration_milliseconds_bucket",
    "webhook_deliveries", "webhook_delivery_oldest_due_seconds", "booking_emails", "booking_email_oldest_due_seconds",
    "webhook_delivery_latency_seconds_bucket", "webhook_delivery_attempts_total",
}
_METRIC = re.compile(r"\b((?:http|bookings|stripe|dramatiq|webhook|booking)_\w+|bookings)\b(?!\s*\()")


def metrics_named(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def test_every_rule_asks_for_an_exported_metric() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            names = metrics_named(rule["expr"])
            assert names and names <= EXPORTED, (rule["alert"], names - EXPORTED)


def test_prometheus_loads_the_rules_it_ships_with() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]


@needs_promtool
def test_promtool_accepts_the_rules_and_the_config() -> None:
    for command in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"]):
        result = subprocess.run([PROMTOOL, *command], cwd=PROMETHEUS, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts.test.yml").read_text()))
    shipped = {rule["alert"] for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
               for rule in group["rules"]}
    assert tested == shipped, f"alerts without a unit test: {shipped - tested}"
