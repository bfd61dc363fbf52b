"""The gunicorn worker class of the web process: gevent, deadlines for slow clients, JSON errors.

gunicorn's sync workers are tied to one socket each: two clients sending headers or a body a
byte at a time held both workers of a two-worker API until gunicorn killed them (30 s). Under
gevent each connection is a greenlet, so a slow client holds only its own, and every request
gets two deadlines:

- its request line and headers must arrive within REQUEST_HEADER_TIMEOUT_SECONDS (for the first
  request of a connection and for each kept-alive one), or the connection is closed;
- its body must arrive within REQUEST_BODY_TIMEOUT_SECONDS, or it is answered 408 in JSON and
  closed. The body is read before the app runs, so no database connection waits on a client.

gunicorn answers some malformed requests itself (414 request line too long, 431 header too large,
400 control characters in a header); its error pages are HTML, ours are JSON.

This module is imported by gunicorn's master before it forks: it imports nothing of the app, so
that gevent patches the standard library in each worker before the app (psycopg, redis-py,
SQLAlchemy's pool) is imported.
"""

from __future__ import annotations

import io
import json
import re
from http import HTTPStatus
from typing import Any

import gevent
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")
_MESSAGES = {
    400: "the request is not valid HTTP/1.1",
    414: "the request line (method, path and query) is too long",
    431: "the request headers are too large",
    500: "an unexpected error occurred",
}


class Worker(GeventWorker):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_body_bytes: int = 64 * 1024

    def load_wsgi(self) -> None:
        # After gevent's monkey-patching (GeventWorker.init_process), before the app is loaded.
        from config.settings import Settings

        settings = Settings.from_env()
        self.header_timeout = settings.request_header_timeout_seconds
        self.body_timeout = settings.request_body_timeout_seconds
        self.max_body_bytes = settings.max_body_bytes
        super().load_wsgi()

    def timeout_ctx(self) -> gevent.Timeout:
        """The deadline for a request's line and headers (gunicorn then closes the connection)."""
        return gevent.Timeout(self.header_timeout, False)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> bool:
        if req.body is not None and not self._read_body(req):
            write_json_error(sock, 408, "the request body did not arrive in time")
            raise StopIteration()
        return bool(super().handle_request(listener_name, req, sock, addr))

    def _read_body(self, req: Any) -> bool:
        """Read the body into memory within the body deadline; False if it did not arrive.

        One byte past MAX_BODY_BYTES is enough for the app to answer 413; the rest is left unread
        and the connection closed after the answer.
        """
        limit = self.max_body_bytes + 1
        chunks, size, complete = [], 0, False
        with gevent.Timeout(self.body_timeout, False):
            while size < limit and (chunk := req.body.read(min(65536, limit - size))):
                chunks.append(chunk)
                size += len(chunk)
            complete = True
        if not complete:
            return False
        if size >= limit:
            req.must_close = True
        req.body = io.BytesIO(b"".join(chunks))
        return True

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's own decision (status, log line, access log), answered in JSON."""
        page = _CapturedWrite(client)
        super().handle_error(req, page, addr, exc)
        match = _STATUS_LINE.match(page.written)
        try:
            status = int(match.group(1)) if match else 400
            write_json_error(client, status, _MESSAGES.get(status, HTTPStatus(status).phrase))
        except Exception:
            self.log.debug("Failed to send error message.")


class _CapturedWrite:
    """A client socket whose writes are kept instead of sent: gunicorn's HTML error page."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.written = b""

    def sendall(self, data: bytes) -> None:
        self.written += data

    def send(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def write_json_error(sock: Any, status: int, message: str) -> None:
    """`{"error": {"code", "message", "details"}}` as the app answers, then the connection closes."""
    phrase = HTTPStatus(status).phrase
    code = "internal_error" if status >= 500 else phrase.lower().replace(" ", "_").replace("-", "_")
    body = json.dumps({"error": {"code": code, "message": message, "details": None}}).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)
