"""A client's webhook receiver on 127.0.0.1 for the fault campaign: one path per endpoint, every
delivery's signature checked with the helper docs/notifications.md shows clients, every event id
kept. It can refuse a share of first attempts, so the service's retries are exercised too."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "notifications.md"


def documented_verifier() -> Callable[[bytes, str, str], bool]:
    """`verify_bookings_signature` exactly as docs/notifications.md shows it."""
    section = DOC.read_text().split("## Verifying a delivery", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    if code is None:
        raise RuntimeError("docs/notifications.md shows no verification helper")
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)  # noqa: S102 (our own documentation)
    verify: Callable[[bytes, str, str], bool] = namespace["verify_bookings_signature"]
    return verify


class WebhookReceiver:
    """Receives at `url_for(name)` for each endpoint registered with `expect(name, secret)`.
    `refuse_first` is the share of event ids whose first attempt is answered 503."""

    def __init__(self, refuse_first: float = 0.0) -> None:
        self.refuse_first = refuse_first
        self.verify = documented_verifier()
        self.secrets: dict[str, str] = {}
        #: (endpoint name, event id) -> times received with a good signature.
        self.received: Counter[tuple[str, str]] = Counter()
        self.refused: set[tuple[str, str]] = set()
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.take(self.path.rsplit("/", 1)[-1], body, self.headers.get("Bookings-Signature", ""))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url_for(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{name}"

    def expect(self, name: str, secret: str) -> None:
        with self.lock:
            self.secrets[name] = secret

    def take(self, name: str, body: bytes, signature: str) -> int:
        secret = self.secrets.get(name)
        if secret is None or not self.verify(body, signature, secret):
            with self.lock:
                self.bad_signatures += 1
            return 400
        event_id = str(json.loads(body)["id"])
        with self.lock:
            key = (name, event_id)
            if key not in self.refused and self._refuses(event_id):
                self.refused.add(key)
                return 503
            self.received[key] += 1
        return 200

    def _refuses(self, event_id: str) -> bool:
        # Decided by the id, not by chance: the same share whatever the order of arrival.
        return hashlib.sha256(event_id.encode()).digest()[0] < 256 * self.refuse_first

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
