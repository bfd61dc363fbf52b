"""The README's walk-through, `scripts/walkthrough.sh`, run as written against the running stack."""

from __future__ import annotations

import os
import re
import subprocess
import uuid

import pytest

from db.engine import make_engine, make_sessions, transaction
from db.models import Booking, Payment
from db.queries.clients import create_client
from tests.conftest import ROOT

WALKTHROUGH = ROOT / "scripts" / "walkthrough.sh"


# About 10 s: gunicorn and a worker start, then the booking goes through three Stripe calls.
@pytest.mark.slow
def test_the_walkthrough_books_confirms_and_refunds_a_seat(stack, settings):
    engine = make_engine(settings.database_url, pool_size=1)
    sessions = make_sessions(engine)
    with transaction(sessions) as session:
        key = create_client(session, "walkthrough")[1]
    stack.start_worker(processes=1, threads=4)

    result = subprocess.run(
        ["bash", str(WALKTHROUGH)], cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "BASE_URL": stack.base_url, "API_KEY": key, "RUN": uuid.uuid4().hex[:8]},
    )

    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    booking_id = re.search(r"booking ([0-9a-f-]{36}) is requested", result.stdout)[1]
    with sessions() as session:
        booking = session.get(Booking, uuid.UUID(booking_id))
        payment = session.get(Payment, uuid.UUID(booking_id))
    engine.dispose()
    assert booking.status == "refunded"
    assert payment.amount_captured == booking.total_amount > 0
    # The demo events are weeks away: more than the default policy's 48 h notice, a full refund.
    assert payment.amount_refunded == payment.amount_captured
    assert f"refunded {payment.amount_refunded} " in result.stdout
