"""Run `localstripe` (a Stripe-compatible server for development and tests) with three fixes.

    python -m devtools.localstripe_server --port 8420 [--host 127.0.0.1]

1. State lives in memory only. Upstream pickles its whole store to /tmp/localstripe.pickle after every
   write: O(store size) per request, and every instance on the machine shares (and clobbers) that file.
2. `Idempotency-Key` is honoured the way Stripe does it. Upstream ignores the header, so a retried
   "create PaymentIntent" would create a second one here while Stripe would not: the very bug our
   idempotency keys exist to prevent would stay invisible in tests.
3. Confirming an intent with a new payment method, and a minimal Checkout Session resource
   (`devtools/localstripe_additions.py`); upstream has neither.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import socket
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import hdrs, web
from localstripe import resources, server

from devtools import localstripe_additions

# Stripe keeps an idempotent result for 24 hours.
REPLAY_SECONDS = 24 * 3600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class _SavedResponse:
    fingerprint: str
    status: int
    body: bytes
    content_type: str
    expires_at: float


_saved: dict[tuple[str, str], _SavedResponse] = {}
# One lock per key while requests with it are in flight; weak values so finished keys cost nothing.
_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()


def _is_saved(status: int) -> bool:
    # Stripe saves a result once the endpoint started executing, declines (402) included, but not
    # requests that failed validation. localstripe answers both validation and state errors with 400,
    # so 400s are not saved: re-running them gives the same answer unless the state really changed.
    return 200 <= status < 300 or status == 402


async def _fingerprint(request: web.Request) -> str:
    # Stripe compares parameters, not bytes: sort form fields so encoding order does not matter.
    body = await request.read()  # aiohttp caches it, so localstripe's handlers can still read it
    if request.content_type == "application/x-www-form-urlencoded":
        body = repr(sorted(parse_qsl(body.decode(), keep_blank_values=True))).encode()
    return hashlib.sha256(request.path.encode() + b"\0" + body).hexdigest()


def _key_reused(key: str) -> web.Response:
    message = (
        "Keys for idempotent requests can only be used with the same parameters they were first "
        f"used with. Try using a key other than '{key}' if you meant to execute a different request."
    )
    return web.json_response(
        {"error": {"type": "idempotency_error", "message": message}}, status=400
    )


def _replay(saved: _SavedResponse, key: str) -> web.Response:
    headers = {
        hdrs.CONTENT_TYPE: saved.content_type,
        "Idempotency-Key": key,
        "Idempotent-Replayed": "true",
    }
    return web.Response(status=saved.status, body=saved.body, headers=headers)


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    scope = (request.headers.get(hdrs.AUTHORIZATION, ""), key)  # keys are per account, like Stripe
    fingerprint = await _fingerprint(request)
    lock = _locks.setdefault(scope, asyncio.Lock())
    # A concurrent request with the same key waits, then replays: the endpoint runs once.
    async with lock:
        saved = _saved.get(scope)
        if saved is not None and saved.expires_at > time.monotonic():
            return _key_reused(key) if saved.fingerprint != fingerprint else _replay(saved, key)
        response = await handler(request)
        if isinstance(response, web.Response) and _is_saved(response.status):
            _prune_expired()
            _saved[scope] = _SavedResponse(
                fingerprint=fingerprint,
                status=response.status,
                body=bytes(response.body or b""),  # type: ignore[arg-type]  # always bytes for json
                content_type=response.headers.get(hdrs.CONTENT_TYPE, "application/json"),
                expires_at=time.monotonic() + REPLAY_SECONDS,
            )
        response.headers["Idempotency-Key"] = key
        return response


_last_prune = 0.0


def _prune_expired() -> None:
    # A full scan of the saved answers: once a minute is plenty for a 24-hour lifetime.
    global _last_prune
    now = time.monotonic()
    if now - _last_prune < 60:
        return
    _last_prune = now
    for scope in [scope for scope, saved in _saved.items() if saved.expires_at <= now]:
        del _saved[scope]


def _keep_store_in_memory() -> None:
    # Store.__setitem__/__delitem__ and localstripe's save middleware all go through dump_to_disk;
    # with it a no-op, and try_load_from_disk never called, the pickle file is neither read nor written.
    resources.Store.dump_to_disk = lambda self: None


def _listening_socket(host: str | None, port: int) -> socket.socket:
    if host is None:
        # Like localstripe: every interface, IPv4 and IPv6 (a dual-stack socket).
        host, family = "::", socket.AF_INET6
        if not socket.has_ipv6:
            host, family = "0.0.0.0", socket.AF_INET
    else:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and host == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="localstripe, in memory, with Idempotency-Key")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default=None, help="default: all interfaces, like localstripe")
    parser.add_argument(
        "--from-scratch", action="store_true", help="accepted; state is never loaded"
    )
    args = parser.parse_args(argv)

    _keep_store_in_memory()
    server.app.middlewares.insert(0, idempotency_middleware)  # outermost: sees localstripe's errors
    localstripe_additions.install(server.app)

    access_log = logging.getLogger("aiohttp.access")
    access_log.setLevel(logging.DEBUG)
    access_log.addHandler(logging.StreamHandler())
    # The test suite opens hundreds of connections at once; aiohttp's default backlog is 128.
    web.run_app(
        server.app,
        sock=_listening_socket(args.host, args.port),
        access_log=access_log,
        backlog=1024,
        shutdown_timeout=2,
    )


if __name__ == "__main__":
    main()
