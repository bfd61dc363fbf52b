"""A fault-injecting HTTP proxy in front of the local Stripe server (integration tests and bench/chaos/).

It forwards every request. Rules can drop the answer after the upstream has acted (the failure
between "called Stripe" and "recorded the result"), answer 500 without forwarding, or delay.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class DropResponses:
    """Drop the answers to the first `count` requests for which `matches(method, path)` holds."""

    matches: Callable[[str, str], bool]
    count: int
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def should_drop(self, method: str, path: str) -> bool:
        with self.lock:
            if self.dropped < self.count and self.matches(method, path):
                self.dropped += 1
                return True
            return False


@dataclass
class RandomFaults:
    """Stripe misbehaving at random: `error` answer 500 unforwarded, `lost` act then drop the
    answer, `slow` wait `slow_seconds` first. Fractions of all requests, decided per request."""

    error: float = 0.0
    lost: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 1.5
    seed: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"error": 0, "lost": 0, "slow": 0})

    def __post_init__(self) -> None:
        import random

        self.random = random.Random(self.seed)
        self.lock = threading.Lock()

    def draw(self) -> str | None:
        with self.lock:
            roll = self.random.random()
            for kind, share in (("error", self.error), ("lost", self.lost), ("slow", self.slow)):
                if roll < share:
                    self.counts[kind] += 1
                    return kind
                roll -= share
            return None


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.rules: list[DropResponses] = []
        self.random_faults: RandomFaults | None = None
        self.forwarded: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy.random_faults.draw() if proxy.random_faults and self.command == "POST" else None
                if fault == "error":
                    self._answer(500, b'{"error": {"type": "api_error", "message": "injected"}}')
                    return
                if fault == "slow":
                    time.sleep(proxy.random_faults.slow_seconds)  # type: ignore[union-attr]
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream_conn.request(self.command, self.path, body=body, headers=headers)
                answer = upstream_conn.getresponse()
                payload = answer.read()
                upstream_conn.close()
                proxy.forwarded.append((self.command, self.path))
                if fault == "lost" or any(rule.should_drop(self.command, self.path) for rule in proxy.rules):
                    # The upstream acted; the caller never hears about it.
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                # A caller that went away (a worker killed mid-call) is part of the experiment.
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def drop(self, rule: DropResponses) -> DropResponses:
        self.rules.append(rule)
        return rule

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookRelay:
    """Stands between the local Stripe server's own webhook deliveries and the service, and
    withholds those about the intents in `withheld`: the caller delivers (or loses) them itself."""

    def __init__(self, target: str) -> None:
        self.withheld: set[str] = set()
        self.relayed = 0
        relay = self
        destination = urlsplit(target)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 200 if relay._is_withheld(body) else relay._forward(destination, self.path, body, self.headers)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _is_withheld(self, body: bytes) -> bool:
        try:
            obj = json.loads(body)["data"]["object"]
        except (ValueError, KeyError, TypeError):
            return False
        return isinstance(obj, dict) and (obj.get("id") in self.withheld or obj.get("payment_intent") in self.withheld)

    def _forward(self, destination: Any, path: str, body: bytes, headers: Any) -> int:
        conn = http.client.HTTPConnection(destination.hostname, destination.port, timeout=30)
        try:
            conn.request("POST", destination.path or path, body=body, headers={
                "Content-Type": headers.get("Content-Type", "application/json"),
                "Stripe-Signature": headers.get("Stripe-Signature", "")})
            status = conn.getresponse().status
            self.relayed += 1
            return status
        except OSError:
            return 502
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
