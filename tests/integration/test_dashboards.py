"""The shipped Grafana dashboard loads, and asks only for metrics the processes export."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_alert_rules import EXPORTED, metrics_named

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "bookings-dashboard.json"


def test_every_panel_queries_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = metrics_named(target["expr"])
            assert names and names <= EXPORTED, (panel["title"], names - EXPORTED)


def test_panels_have_unique_ids_and_do_not_overlap():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells = [(panel["gridPos"]["x"], panel["gridPos"]["y"]) for panel in panels]
    assert len(set(cells)) == len(cells)


def test_the_dashboard_charts_every_figure_an_alert_watches():
    import yaml

    alerts = yaml.safe_load((DASHBOARD.parents[1] / "prometheus" / "alerts.yml").read_text())
    watched = {name for group in alerts["groups"] for rule in group["rules"] for name in metrics_named(rule["expr"])}
    charted = {name for panel in json.loads(DASHBOARD.read_text())["panels"]
               for target in panel["targets"] for name in metrics_named(target["expr"])}
    assert watched <= charted, watched - charted


def test_the_metric_names_match_what_the_api_defines():
    from api.metrics import LATENCY, REQUESTS

    assert REQUESTS._name == "http_requests" and LATENCY._name == "http_request_duration_seconds"
