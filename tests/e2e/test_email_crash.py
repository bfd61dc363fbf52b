"""A worker process SIGKILLed while it sends a customer email, over real worker processes and a
real SMTP server (aiosmtpd): every (booking, kind) is mailed once, except that the one mail the
server had already taken when the worker died is sent again, with the same Message-ID."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from config.settings import Settings
from db.engine import make_engine, make_sessions, transaction
from db.queries.clients import create_client
from db.unit_of_work import UnitOfWork
from domain.lifecycle import BookingStatus
from services import queues
from services.emails import SUBJECTS
from services.outbox import StagedMessage
from tasks.broker import make_broker, make_dispatcher
from tests.integration.notification_fixtures import HoldingSink
from tests.support import first_event, seat_request, wait_for

pytestmark = pytest.mark.slow

S = BookingStatus
KIND_OF_SUBJECT = {subject: kind for kind, subject in SUBJECTS.items()}


@pytest.mark.parametrize("kept", [False, True], ids=["before-the-server-took-it", "after-the-server-took-it"])
def test_a_worker_killed_while_sending_mails_each_booking_and_kind_once(stack, settings, kept):
    sink = HoldingSink(keep_held=kept)
    stack.env["SMTP_URL"] = sink.url
    sessions = make_sessions(make_engine(settings.database_url, pool_size=2))
    try:
        owed, unmailed = _bookings_owed_emails(stack, sessions)
        broker = make_broker(Settings.from_env(stack.env))
        dispatch = make_dispatcher(broker)

        def sweep() -> None:  # what the scheduler enqueues every few seconds
            dispatch([StagedMessage(uuid.uuid4(), *queues.SEND_EMAILS, ())])

        worker = stack.start_worker(processes=1, threads=2)
        sweep()
        assert sink.holding.wait(60), "no worker began sending"
        stack.kill_worker(worker)
        assert sink.hung_up.wait(10), "the kill did not land while the mail was being sent"
        assert _email_statuses(sessions) == {"pending": len(owed)}  # the claim is all that was written

        _lease_runs_out(sessions)
        stack.start_worker(processes=1, threads=2)
        wait_for(lambda: sweep() or _email_statuses(sessions) == {"sent": len(owed)}, timeout=60, interval=0.5,
                 what="every email marked sent")
        broker.close()

        mails = [(_booking_of(mail), KIND_OF_SUBJECT[mail["Subject"]], mail["Message-ID"]) for mail in sink.mails]
        copies = Counter((booking, kind) for booking, kind, _ in mails)
        message_ids = {(booking, kind): set() for booking, kind, _ in mails}
        for booking, kind, message_id in mails:
            message_ids[(booking, kind)].add(message_id)
    finally:
        sink.stop()
        sessions.kw["bind"].dispose()

    assert set(copies) == owed and unmailed not in {booking for booking, _ in copies}
    # One Message-ID per (booking, kind), whatever was repeated: a mail system can tell a repeat.
    assert all(len(ids) == 1 for ids in message_ids.values())
    assert len({next(iter(ids)) for ids in message_ids.values()}) == len(owed)
    if kept:
        # The server had the mail when its sender died, before the mark: SMTP cannot say so, and
        # the next sweep sends it again. That one mail is the only repeat.
        assert sorted(copies.values()) == [1] * (len(owed) - 1) + [2]
    else:
        assert set(copies.values()) == {1}


def _bookings_owed_emails(stack, sessions) -> tuple[set[tuple[str, str]], str]:
    """Bookings moved to where their customers are owed an email (and one whose customer has
    no address): the (booking, kind) pairs owed, and the booking owed nothing."""
    with transaction(sessions) as session:
        key = create_client(session, "e2e-emails")[1]
    event_id, seats = first_event(sessions)
    with httpx.Client(base_url=stack.base_url, trust_env=False, timeout=10) as http:
        ids = []
        for seat in seats[:5]:
            answer = http.post("/v1/bookings", json=seat_request(event_id, [seat]),
                               headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
    unmailed = ids[4]
    with sessions.begin() as session:
        session.execute(text("UPDATE bookings SET customer_email = '' WHERE id = :id"), {"id": unmailed})
    moves = {ids[0]: [S.CANCELLED], ids[1]: [S.CANCELLED], ids[2]: [S.AWAITING_PAYMENT, S.EXPIRED],
             ids[3]: [S.CANCELLED], unmailed: [S.CANCELLED]}
    for booking_id, targets in moves.items():
        with UnitOfWork(sessions) as uow:
            locked = uow.lock(uuid.UUID(booking_id))
            for target in targets:
                locked.move(target, datetime.now(UTC))
            uow.commit()
    return {(b, targets[-1].value) for b, targets in moves.items() if b != unmailed}, unmailed


def _email_statuses(sessions) -> dict[str, int]:
    with sessions() as session:
        return dict(session.execute(text("SELECT status, count(*) FROM booking_emails GROUP BY status")).all())


def _lease_runs_out(sessions) -> None:
    """The killed sweep's claims lapse (five minutes, moved in the database rather than waited for)."""
    with sessions.begin() as session:
        session.execute(text("UPDATE booking_emails SET next_attempt_at = now() WHERE status = 'pending'"))


def _booking_of(mail) -> str:
    plain = mail.get_payload()[0].get_payload(decode=True).decode()
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", plain)
    assert found, plain
    return found.group(0)
