"""The operators' dashboard and the API docs, loaded in headless Chromium from the running stack.

Needs Debian's `chromium` (.ci/run installs it); skipped where it is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import dramatiq
import pytest

from config.settings import Settings
from db.engine import make_engine, make_sessions, transaction
from db.queries.clients import create_client
from services import queues
from tasks.broker import make_broker
from tests.conftest import LOCAL
from tests.support import wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
SCREENSHOTS = LOCAL / "screenshots"


def chromium(url: str, tmp_path: Path, *, screenshot: Path | None = None, budget_ms: int = 3000) -> str:
    """The page's DOM after its scripts ran; optionally a screenshot of it.

    The virtual time budget stays under the dashboard's 5 s self-refresh: a reload inside the
    budget keeps headless Chromium from ever finishing.
    """
    assert CHROMIUM is not None
    # The flags the workplace's probe uses: headless as root, and nothing that phones home.
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / uuid.uuid4().hex}", f"--virtual-time-budget={budget_ms}",
            "--window-size=1280,1000"]
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


def test_docs_page_renders_every_route_with_swagger_ui(stack, tmp_path):
    dom = chromium(f"{stack.base_url}/docs", tmp_path, screenshot=SCREENSHOTS / "docs.png", budget_ms=8000)
    assert "Bookings API" in dom
    for summary in ("Submit a booking request", "Seat map of an event", "Search time-slot resources",
                    "Stripe webhook"):
        assert summary in dom, summary
