"""Request id and authentication, applied to every request before its responder."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import uuid
from typing import Any, Protocol

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


class AddressBudget(Protocol):
    """What a client address may spend on requests no known key vouches for (api.protection)."""

    def admit_anonymous(self, req: falcon.Request) -> None: ...

    def charge_failed_authentication(self, req: falcon.Request) -> None: ...


class Authentication:
    """API keys on every route whose resource does not set `auth = None`.

    Keys come as a Bearer token, or as the password of HTTP Basic so a browser can open the
    operators' pages. Resources set `auth = "operator"` to require an operator key (a client
    key there is a 403) and `challenge = "Basic"` to make a browser ask for it.

    A key not in the cache is looked up only within its address's budget, and a failed lookup
    costs the address more: a flood of bad keys is refused before it reaches the database.
    """

    def __init__(
        self, sessions: sessionmaker[Session], *, budget: AddressBudget | None = None, cache_seconds: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.budget = budget
        # Known keys skip the database for a few seconds: one round trip less on every request,
        # at the price of a revoked key working for up to `cache_seconds` more.
        self._known: TTLCache[bytes, Principal] = TTLCache(maxsize=10_000, ttl=cache_seconds)
        self._lock = threading.Lock()
        # A key whose entry lapses is met by every request of that client in flight at once (a
        # gevent worker serves dozens): one of them looks it up, the others wait and find it
        # cached, rather than each spending the address's budget and a round trip on it. Locks
        # are striped by the key's digest, so look-ups of other keys mostly do not wait.
        self._look_ups = [threading.Lock() for _ in range(LOOK_UP_STRIPES)]

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        required = getattr(resource, "auth", "client")
        if required is None or resource is None:
            return
        if not hasattr(resource, f"on_{req.method.lower()}"):
            return  # a method the route does not have: Falcon answers 405, whoever asks
        key = presented_key(req)
        digest = hashlib.sha256(key.encode()).digest()
        principal = self._cached(digest) if key else None
        if principal is None:
            principal = self._admitted_look_up(req, key, digest)
        if principal is None:
            if self.budget is not None and key:
                self.budget.charge_failed_authentication(req)
            scheme = getattr(resource, "challenge", "Bearer")
            raise APIError(
                falcon.HTTP_401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": f'{scheme} realm="bookings"'},
            )
        if required == "operator" and not principal.is_operator:
            raise APIError(falcon.HTTP_403, "forbidden", "this route needs an operator key")
        req.context.principal = principal
        # A per-key secret for forms (CSRF tokens); the key itself is not kept.
        req.context.key_digest = digest

    def _cached(self, digest: bytes) -> Principal | None:
        with self._lock:
            return self._known.get(digest)

    def _admitted_look_up(self, req: falcon.Request, key: str, digest: bytes) -> Principal | None:
        """The key's principal from the database, within the address's budget (None: no such key)."""
        if not key:
            if self.budget is not None:
                self.budget.admit_anonymous(req)
            return None
        with self._look_ups[digest[0] % LOOK_UP_STRIPES]:
            principal = self._cached(digest)  # looked up by a request this one waited for
            if principal is not None:
                return principal
            if self.budget is not None:
                self.budget.admit_anonymous(req)
            with self.sessions() as session:
                principal = authenticate(session, key)
            if principal is not None:
                with self._lock:
                    self._known[digest] = principal
            return principal


#: Locks that serialize look-ups of one key (and of the keys that share its stripe).
LOOK_UP_STRIPES = 64


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
