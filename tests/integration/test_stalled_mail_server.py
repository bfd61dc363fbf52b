"""A mail server that accepts connections and never answers holds one worker thread, not all."""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from db.unit_of_work import UnitOfWork
from domain.lifecycle import BookingStatus
from services import emails
from tests.support import first_event, seat_request, wait_for, wait_for_statuses


@pytest.fixture
def stalled_server() -> Iterator[socket.socket]:
    """Listens, never accepts: a client connects (the kernel answers) and waits for a greeting."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(32)
    yield server
    server.close()  # the connections waiting in its backlog are reset: the sends end at once


@pytest.fixture
def settings(settings: Any, stalled_server: socket.socket) -> Any:
    return dataclasses.replace(settings, smtp_url=f"smtp://127.0.0.1:{stalled_server.getsockname()[1]}")


def _waiting_connections(server: socket.socket) -> int:
    """Connections in the listener's backlog (Linux: the Recv-Q of a listening socket)."""
    port = f"{server.getsockname()[1]:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port}") and fields[3] == "0A":  # LISTEN
                return int(fields[4].split(":")[1], 16)
    return 0


@pytest.mark.parametrize("isolated", [
    pytest.param(True, id="one email sweep per worker"),
    pytest.param(False, id="control: a sweep per tick", marks=pytest.mark.control),
])
def test_a_stalled_mail_server_does_not_slow_bookings(api, runtime, worker, stalled_server, monkeypatch, isolated):
    """Eight emails owed, one per sweep, and eight ticks of the scheduler: one sweep at a time
    holds one of the worker's eight threads. The control lets every tick sweep (the process's
    lock switched off): eight threads wait on the server and the bookings wait for them."""
    monkeypatch.setattr(emails, "BATCH", 1)
    if not isolated:
        sweep = emails.send_due_emails
        monkeypatch.setattr(emails, "send_due_emails", lambda ctx, mailer, running=None: sweep(ctx, mailer))
    event_id, seats = first_event(runtime.context.sessions)
    owed = [api.book(seat_request(event_id, [seat])).json["id"] for seat in seats[:8]]
    for booking_id in owed:
        with UnitOfWork(runtime.context.sessions) as uow:
            uow.lock(uuid.UUID(booking_id)).move(BookingStatus.CANCELLED, datetime.now(UTC))
            uow.commit()
    for _ in range(worker.worker_threads):
        runtime.actors["send_due_emails"].send()
    # One sweep connects and waits (or, in the control, eight); then the ticks have all arrived.
    wait_for(lambda: _waiting_connections(stalled_server) == (1 if isolated else 8), what="stalled SMTP connections")

    started = time.monotonic()
    try:
        later = [api.book(seat_request(event_id, [seat])).json["id"] for seat in seats[8:24]]
        if isolated:
            wait_for_statuses(runtime.context.sessions, later, {"authorized"}, timeout=8)
            # Well inside the 30 s a stalled send takes, and the other ticks never sent.
            assert time.monotonic() - started < 8 and _waiting_connections(stalled_server) == 1
        else:
            with pytest.raises(AssertionError, match="timed out"):  # every worker thread waits on the server
                wait_for_statuses(runtime.context.sessions, later, {"authorized"}, timeout=8)
    finally:
        stalled_server.close()  # before the worker stops: it would wait out the stalled sends
