"""The shipped Grafana dashboard asks only for metrics the processes export."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "bookings-dashboard.json"
EXPORTED = {
    "http_requests_total", "http_request_duration_seconds_bucket", "bookings",
    "dramatiq_messages_total", "dramatiq_message_errors_total", "dramatiq_message_retries_total",
    "dramatiq_message_rejects_total", "dramatiq_messages_inprogress", "dramatiq_message_duration_milliseconds_bucket",
}


def test_every_panel_queries_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = set(re.findall(r"\b(http_\w+|bookings|dramatiq_\w+)\b", target["expr"]))
            assert names and names <= EXPORTED, (panel["title"], names - EXPORTED)


def test_the_metric_names_match_what_the_api_defines():
    from api.metrics import LATENCY, REQUESTS

    assert REQUESTS._name == "http_requests" and LATENCY._name == "http_request_duration_seconds"
