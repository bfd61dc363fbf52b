"""Request id and authentication, applied to every request before its responder."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import uuid
from typing import Any

import falcon
from cachetools import TTLCache
from sqlalchemy.orm import Session, sessionmaker

from api.errors import APIError
from config.logging import pop, push
from db.queries.clients import Principal, authenticate

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestId:
    """Take the caller's X-Request-ID when it is sane, else make one; echo it back."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-ID")
        req.context.request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        req.context.log_token = push(request_id=req.context.request_id)
        resp.set_header("X-Request-ID", req.context.request_id)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        token = getattr(req.context, "log_token", None)
        if token is not None:
            pop(token)


class Authentication:
    """API keys on every route whose resource does not set `auth = None`.

    Keys come as a Bearer token, or as the password of HTTP Basic so a browser can open the
    operators' pages. Resources set `auth = "operator"` to require an operator key (a client
    key there is a 403) and `challenge = "Basic"` to make a browser ask for it.
    """

    def __init__(self, sessions: sessionmaker[Session], *, cache_seconds: float = 5.0) -> None:
        self.sessions = sessions
        # Known keys skip the database for a few seconds: one round trip less on every request,
        # at the price of a revoked key working for up to `cache_seconds` more.
        self._known: TTLCache[bytes, Principal] = TTLCache(maxsize=10_000, ttl=cache_seconds)
        self._lock = threading.Lock()

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        required = getattr(resource, "auth", "client")
        if required is None or resource is None:
            return
        key = presented_key(req)
        principal = self._principal(key) if key else None
        if principal is None:
            scheme = getattr(resource, "challenge", "Bearer")
            raise APIError(
                falcon.HTTP_401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": f'{scheme} realm="bookings"'},
            )
        if required == "operator" and not principal.is_operator:
            raise APIError(falcon.HTTP_403, "forbidden", "this route needs an operator key")
        req.context.principal = principal
        # A per-key secret for forms (CSRF tokens); the key itself is not kept.
        req.context.key_digest = hashlib.sha256(key.encode()).digest()

    def _principal(self, key: str) -> Principal | None:
        digest = hashlib.sha256(key.encode()).digest()
        with self._lock:
            known = self._known.get(digest)
        if known is not None:
            return known
        with self.sessions() as session:
            principal = authenticate(session, key)
        if principal is not None:
            with self._lock:
                self._known[digest] = principal
        return principal


def presented_key(req: falcon.Request) -> str:
    header = req.get_header("Authorization") or ""
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if len(value) > 400:
        return ""
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return ""
        return password.strip()
    return ""
