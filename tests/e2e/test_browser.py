"""The operators' dashboard and the API docs, loaded in headless Chromium from the running stack.

Needs Debian's `chromium` (.ci/run installs it); skipped where it is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest

from config.settings import Settings
from db.engine import make_engine, make_sessions, transaction
from db.queries.clients import create_client
from services import queues
from tasks.broker import make_broker
from tests.conftest import LOCAL
from tests.support import first_event, seat_request, wait_for, wait_for_statuses

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
SCREENSHOTS = LOCAL / "screenshots"


def chromium(url: str, tmp_path: Path, *, screenshot: Path | None = None, budget_ms: int = 3000,
             width: int = 1280) -> str:
    """The page's DOM after its scripts ran; optionally a screenshot of it.

    The virtual time budget stays under the console's 5 s refresh, so the DOM is the page as
    rendered (htmx's polling would keep headless Chromium busy).
    """
    assert CHROMIUM is not None
    # The flags the workplace's probe uses: headless as root, and nothing that phones home.
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / uuid.uuid4().hex}", f"--virtual-time-budget={budget_ms}",
            f"--window-size={width},1000"]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([*args, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=90)
    return subprocess.run([*args, "--dump-dom", url], check=True, capture_output=True, timeout=90, text=True).stdout


def test_dashboard_in_a_browser_shows_queues_and_a_dead_letter(stack, settings, tmp_path):
    sessions = make_sessions(make_engine(settings.database_url, pool_size=2))
    with transaction(sessions) as session:
        operator_key = create_client(session, "browser-ops", operator=True)[1]
    stack.start_worker(processes=1, threads=2)
    broker = make_broker(Settings.from_env(stack.env))
    broker.enqueue(dramatiq.Message(queue_name=queues.BOOKINGS, actor_name=queues.PLACE_BOOKING.actor_name,
                                    args=("not-a-booking-id",), kwargs={}, options={"max_retries": 0}))
    url = stack.base_url.replace("http://", f"http://ops:{operator_key}@") + "/ops/dead"

    dom = wait_for(lambda: (d := chromium(url, tmp_path)) and "not-a-booking-id" in d and d, timeout=60,
                   what="the dead letter to show on the dashboard")
    for name in (queues.BOOKINGS, queues.PAYMENTS, queues.WEBHOOKS, queues.MAINTENANCE):
        assert f"<option>{name}</option>" in dom
    assert "ValueError: badly formed hexadecimal UUID string" in dom and "Retry selected" in dom
    shot = SCREENSHOTS / "ops-dead.png"
    chromium(url, tmp_path, screenshot=shot)
    assert shot.stat().st_size > 10_000
    broker.close()


def test_every_console_page_shows_what_an_operator_looks_for(stack, settings, tmp_path):
    sessions = make_sessions(make_engine(settings.database_url, pool_size=2))
    with transaction(sessions) as session:
        operator_key = create_client(session, "console-ops", operator=True)[1]
        client_key = create_client(session, "console-client")[1]
    stack.start_worker(processes=1, threads=2)
    event_id, seats = first_event(sessions)
    booking = httpx.post(f"{stack.base_url}/v1/bookings", json=seat_request(event_id, seats[:1]), headers={
        "Authorization": f"Bearer {client_key}", "Idempotency-Key": uuid.uuid4().hex}).json()
    wait_for_statuses(sessions, [booking["id"]], {"authorized"})
    broker = make_broker(Settings.from_env(stack.env))
    broker.enqueue(dramatiq.Message(queue_name=queues.PAYMENTS, actor_name=queues.PLACE_BOOKING.actor_name,
                                    args=(booking["id"], "one-argument-too-many"), kwargs={}, options={"max_retries": 0}))
    base = stack.base_url.replace("http://", f"http://ops:{operator_key}@")

    def page(path: str, name: str, **options: Any) -> str:
        shot = SCREENSHOTS / f"console-{name}.png"
        dom = chromium(base + path, tmp_path, screenshot=shot, **options)
        assert shot.stat().st_size > 10_000, name
        return dom

    overview = wait_for(lambda: (d := page("/ops/", "overview")) and 'id="workers">0 / 2' in d and d,
                        timeout=30, what="the worker's heartbeat on the overview")
    assert "<svg" in overview and "authorized" in overview and "Settle latency" in overview
    assert 'id="processed">' in overview and 'id="webhooks-unmatched"' in overview
    queues_page = page("/ops/queues", "queues")
    assert all(f"<td>{name}</td>" in queues_page for name in (queues.BOOKINGS, queues.PAYMENTS, queues.MAINTENANCE))
    workers = page("/ops/workers", "workers")
    assert "0 / 2 busy" in workers and "heartbeat" in workers
    dead = wait_for(lambda: (d := page("/ops/dead", "dead-letters")) and booking["id"] in d and d, timeout=30,
                    what="the dead letter with its booking link")
    assert f'href="/ops/bookings/{booking["id"]}"' in dead and "Retry all" in dead
    assert "TypeError" in dead
    story = page(f"/ops/bookings/{booking['id']}", "booking")
    assert "new → requested" in story and f"booking-{booking['id']}-authorize-1" in story
    assert "Cancel booking" in story and 'id="status">authorized' in story
    found = page("/ops/bookings?q=ada%40example.com", "bookings")
    assert booking["id"] in found
    events = page("/ops/events", "events")
    assert "<progress" in events and "EUR" in events.upper()
    phone = page("/ops/", "overview-phone", width=390)
    assert "Overview" in phone
    broker.close()


def test_docs_page_renders_every_route_with_swagger_ui(stack, tmp_path):
    dom = chromium(f"{stack.base_url}/docs", tmp_path, screenshot=SCREENSHOTS / "docs.png", budget_ms=8000)
    assert "Bookings API" in dom
    for summary in ("Submit a booking request", "Seat map of an event", "Search time-slot resources",
                    "Stripe webhook"):
        assert summary in dom, summary
