"""Request id and authentication, applied to every request before its responder."""

from __future__ import annotations

import re
import uuid
from typing import Any

import falcon
from sqlalchemy.orm import Session, sessionmaker

from api.errors import APIError
from db.queries.clients import Principal, authenticate

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestId:
    """Take the caller's X-Request-ID when it is sane, else make one; echo it back."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-ID")
        req.context.request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        resp.set_header("X-Request-ID", req.context.request_id)


class Authentication:
    """Bearer API keys on every route whose resource does not set `auth = None`.

    Resources set `auth = "operator"` to require an operator key; a client key there is 403.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        required = getattr(resource, "auth", "client")
        if required is None or resource is None:
            return
        principal = self._principal(req)
        if principal is None:
            raise APIError(
                falcon.HTTP_401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": 'Bearer realm="bookings"'},
            )
        if required == "operator" and not principal.is_operator:
            raise APIError(falcon.HTTP_403, "forbidden", "this route needs an operator key")
        req.context.principal = principal

    def _principal(self, req: falcon.Request) -> Principal | None:
        header = req.get_header("Authorization") or ""
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip() or len(key) > 200:
            return None
        with self.sessions() as session:
            return authenticate(session, key.strip())
