"""Customers get one email per (booking, kind), through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from adapters.smtp import SmtpMailer
from db.queries.notifications import notification_figures
from db.unit_of_work import UnitOfWork
from domain.lifecycle import BookingStatus
from services import emails
from services.emails import send_due_emails
from tests.integration.notification_fixtures import Clock, Sink
from tests.support import first_event, seat_request, wait_for

S = BookingStatus


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink()
    yield sink
    sink.stop()


@pytest.fixture
def settings(settings: Any, sink: Sink) -> Any:
    return dataclasses.replace(settings, smtp_url=sink.url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctx(runtime: Any, clock: Clock) -> Any:
    return dataclasses.replace(runtime.context, clock=clock)


def _booking_moved(api: Any, ctx: Any, seat: int, *targets: BookingStatus) -> str:
    event_id, seats = first_event(ctx.sessions)
    booking_id = api.book(seat_request(event_id, seats[seat:seat + 1])).json["id"]
    with UnitOfWork(ctx.sessions) as uow:
        locked = uow.lock(uuid.UUID(booking_id))
        for target in targets:
            locked.move(target, ctx.clock())
        uow.commit()
    return booking_id


def _emails(ctx: Any) -> list[Any]:
    with ctx.engine.connect() as conn:
        return list(conn.execute(text("SELECT kind, status, attempts, last_error FROM booking_emails")).all())


def test_a_confirmed_booking_gets_one_email_with_its_details(api, ctx, sink):
    booking_id = _booking_moved(api, ctx, 0, S.AWAITING_PAYMENT, S.AUTHORIZED, S.CONFIRMED)
    mailer = SmtpMailer(sink.url)

    assert send_due_emails(ctx, mailer) == 1
    ctx.clock.advance(timedelta(days=1))
    assert send_due_emails(ctx, mailer) == 0

    [mail] = sink.mails
    assert mail["To"] == "ada@example.com" and mail["Subject"] == "Your booking is confirmed"
    plain = mail.get_payload()[0].get_payload(decode=True).decode()
    html = mail.get_payload()[1].get_payload(decode=True).decode()
    event_id, _ = first_event(ctx.sessions)
    with ctx.engine.connect() as conn:
        name, venue = conn.execute(text("SELECT e.name, v.name FROM events e JOIN venues v ON v.id = e.venue_id"
                                        " WHERE e.id = :id"), {"id": event_id}).one()
    for part in (plain, html):
        assert name in part and venue in part and booking_id in part and "seat" in part and "UTC" in part
    assert "Hello Ada" in plain and "<table>" in html
    assert _emails(ctx) == [("confirmed", "sent", 1, None)]


def test_an_email_the_server_refuses_is_failed_and_never_sent_again(api, ctx, sink):
    sink.refuse = True
    _booking_moved(api, ctx, 1, S.CANCELLED)
    mailer = SmtpMailer(sink.url)

    send_due_emails(ctx, mailer)
    sink.refuse = False
    ctx.clock.advance(timedelta(days=1))
    send_due_emails(ctx, mailer)

    assert sink.mails == []
    [(kind, status, attempts, error)] = _emails(ctx)
    assert (kind, status, attempts) == ("cancelled", "failed", 1) and "550" in error


def test_an_email_waits_for_a_server_that_is_down_and_is_sent_once_it_is_up(api, ctx, sink):
    _booking_moved(api, ctx, 2, S.AWAITING_PAYMENT, S.EXPIRED)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        down = f"smtp://127.0.0.1:{unused.getsockname()[1]}"
    send_due_emails(ctx, SmtpMailer(down, timeout=2))
    [(_, status, attempts, error)] = _emails(ctx)
    assert (status, attempts) == ("pending", 1) and error

    ctx.clock.advance(timedelta(seconds=10))
    send_due_emails(ctx, SmtpMailer(sink.url))
    send_due_emails(ctx, SmtpMailer(sink.url))
    assert [m["Subject"] for m in sink.mails] == ["Your booking has expired"]
    assert [row[:3] for row in _emails(ctx)] == [("expired", "sent", 2)]


def test_without_smtp_no_email_is_sent_and_the_rows_say_so(api, ctx, sink):
    _booking_moved(api, ctx, 3, S.CANCELLED)
    send_due_emails(ctx, None)
    assert sink.mails == []
    assert _emails(ctx) == [("cancelled", "skipped", 1, "SMTP_URL is not set")]


def test_workers_send_the_customer_emails(api, runtime, worker, sink):
    _booking_moved(api, runtime.context, 4, S.CANCELLED)
    runtime.actors["send_due_emails"].send()
    wait_for(lambda: sink.mails, what="the email in the sink")
    assert [m["Subject"] for m in sink.mails] == ["Your booking is cancelled"]


def test_a_booking_whose_customer_has_no_address_gets_no_email(api, ctx, sink):
    event_id, seats = first_event(ctx.sessions)
    booking_id = api.book(seat_request(event_id, seats[5:6])).json["id"]
    with ctx.sessions.begin() as session:
        session.execute(text("UPDATE bookings SET customer_email = '' WHERE id = :id"), {"id": booking_id})
    with UnitOfWork(ctx.sessions) as uow:
        uow.lock(uuid.UUID(booking_id)).move(S.CANCELLED, ctx.clock())
        uow.commit()

    assert send_due_emails(ctx, SmtpMailer(sink.url)) == 0
    assert sink.mails == [] and _emails(ctx) == []


class WorkerDied(BaseException):
    """What a SIGKILL does to a sweep, as far as the database can tell: it stops, marking nothing."""


class DiesAfterTheServerTakesIt:
    def __init__(self, url: str) -> None:
        self.mailer = SmtpMailer(url)

    def send(self, message: Any) -> None:
        self.mailer.send(message)
        raise WorkerDied


def test_a_mail_sent_again_after_a_worker_died_before_its_mark_has_the_same_message_id(api, ctx, sink):
    _booking_moved(api, ctx, 6, S.CANCELLED)
    with pytest.raises(WorkerDied):
        send_due_emails(ctx, DiesAfterTheServerTakesIt(sink.url))
    ctx.clock.advance(emails.CLAIM_LEASE)
    send_due_emails(ctx, SmtpMailer(sink.url))

    first, again = sink.mails
    assert first["Message-ID"] == again["Message-ID"] and first["Subject"] == again["Subject"]
    assert _emails(ctx) == [("cancelled", "sent", 1, None)]


class SlowServer:
    """A server taking two minutes a mail (on the test's clock). When a send outlives the sweep's
    lease, another worker's sweep runs meanwhile, as the scheduler would start one."""

    def __init__(self, ctx: Any, url: str) -> None:
        self.ctx, self.mailer, self.claimed_at = ctx, SmtpMailer(url), ctx.clock()
        self.overlapped = False

    def send(self, message: Any) -> None:
        self.ctx.clock.advance(timedelta(minutes=2))
        if not self.overlapped and self.ctx.clock() > self.claimed_at + emails.CLAIM_LEASE:
            self.overlapped = True
            send_due_emails(self.ctx, self.mailer)
        self.mailer.send(message)


def test_a_slow_server_never_gets_one_mail_from_two_sweeps(api, ctx, sink):
    for seat in range(7, 11):
        _booking_moved(api, ctx, seat, S.CANCELLED)
    server = SlowServer(ctx, sink.url)

    sent = send_due_emails(ctx, server)
    assert sent < 4  # the sweep stopped before its lease ran out, and gave the rest back at once
    with ctx.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM booking_emails WHERE status = 'pending'"
                                 " AND next_attempt_at <= :now"), {"now": ctx.clock()}).scalar_one() == 4 - sent
    while send_due_emails(ctx, server):
        pass

    assert Counter(m["Message-ID"] for m in sink.mails) == dict.fromkeys({m["Message-ID"] for m in sink.mails}, 1)
    assert len(sink.mails) == 4 and {row[1] for row in _emails(ctx)} == {"sent"}


def test_the_oldest_due_email_is_the_email_queue_age(api, ctx, sink):
    _booking_moved(api, ctx, 11, S.CANCELLED)
    with ctx.sessions() as session:
        assert notification_figures(session, ctx.clock.now + timedelta(minutes=2)).oldest_due_email_seconds == 120
    send_due_emails(ctx, SmtpMailer(sink.url))
    with ctx.sessions() as session:
        assert notification_figures(session, ctx.clock.now + timedelta(minutes=2)).oldest_due_email_seconds == 0
