"""A real HTTP receiver on 127.0.0.1, a real SMTP sink, and a clock the test moves."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


class Receiver:
    """Answers each POST with what `answer()` says (a status code, or None to stall), and keeps them."""

    def __init__(self, answer: Callable[[], int | None] = lambda: 200) -> None:
        self.answer = answer
        self.received: list[Received] = []
        self.released = threading.Event()
        #: POSTs being held without an answer right now.
        self.stalled = 0
        self.counting = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.answer()
                if status is None:
                    with receiver.counting:
                        receiver.stalled += 1
                    receiver.released.wait(30)
                    return
                receiver.received.append(Received(dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class Sink:
    """aiosmtpd on 127.0.0.1 keeping every mail; `refuse` makes it answer RCPT with a 550."""

    def __init__(self) -> None:
        self.mails: list[Message] = []
        self.refuse = False
        # aiosmtpd checks it is up by connecting to the port it was given: give it a real one.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        if self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.mails.append(message_from_bytes(content))
        return "250 Message accepted for delivery"

    def stop(self) -> None:
        self.controller.stop()


class HoldingSink(Sink):
    """A sink that holds the first message's DATA unanswered until its client hangs up (a worker
    killed while sending), so a kill lands mid-send for sure. `keep_held` says whether the
    server already had that message when the client died: like a server that stored it and was
    about to answer 250, or (False) like one that drops a message whose sender left before the
    answer, as an SMTP server does."""

    def __init__(self, *, keep_held: bool) -> None:
        super().__init__()
        self.keep_held = keep_held
        self.holding = threading.Event()
        self.hung_up = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.holding.is_set():
            return await super().handle_DATA(server, session, envelope)
        if self.keep_held:
            await super().handle_DATA(server, session, envelope)
        self.holding.set()
        try:
            await asyncio.sleep(120)  # aiosmtpd cancels this when the client's connection is lost
        except asyncio.CancelledError:
            self.hung_up.set()
            raise
        return "451 4.3.0 held too long; the test never killed the sender"


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by

    def to(self, when: datetime) -> None:
        self.now = max(self.now, when)

