"""Every error leaves the API as `{"error": {"code", "message", "details"}}`, mapped here once."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import falcon
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from domain import errors

log = logging.getLogger(__name__)

STATUS_OF: dict[type[errors.DomainError], str] = {
    errors.NotFound: falcon.HTTP_404,
    errors.InvalidRequest: falcon.HTTP_422,
    errors.InvalidState: falcon.HTTP_409,
    errors.IdempotencyKeyReused: falcon.HTTP_422,
    errors.RefundExceedsCaptured: falcon.HTTP_422,
}


class APIError(falcon.HTTPError):
    """An HTTP error with our error body; raise it from responders and middleware."""

    def __init__(
        self, status: str, code: str, message: str, *, details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, headers=headers)
        # Not `code`: falcon.HTTPError has one already, an optional integer of its own.
        self.error_code, self.message, self.details = code, message, details

    def to_dict(self, obj_type: Any = dict) -> dict[str, Any]:
        return {"error": {"code": self.error_code, "message": self.message, "details": self.details}}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def handle_domain_error(req: falcon.Request, resp: falcon.Response, ex: errors.DomainError, params: Any) -> None:
    status = next(
        (status for kind, status in STATUS_OF.items() if isinstance(ex, kind)), falcon.HTTP_422
    )
    raise APIError(status, ex.code, ex.message, details=ex.details)


def handle_validation_error(req: falcon.Request, resp: falcon.Response, ex: ValidationError, params: Any) -> None:
    raise APIError(falcon.HTTP_422, "validation_error", "the request is not valid", details=field_errors(ex))


def field_errors(ex: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(part) for part in err["loc"]) or None,
            "code": err["type"],
            "message": err["msg"],
        }
        for err in ex.errors(include_url=False, include_input=False)
    ]


def handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: Any) -> None:
    """Falcon's own errors (404 route, 405, bad headers) in our shape."""
    if isinstance(ex, APIError):
        body = ex.to_dict()
    else:
        status = HTTPStatus(ex.status_code)
        code = status.phrase.lower().replace(" ", "_").replace("-", "_")
        body = error_body(code, ex.description or status.phrase)
    resp.status = ex.status
    resp.media = body
    if ex.headers:
        resp.set_headers(ex.headers)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    """A bug or an outage: log it with the request id, never show a stack trace."""
    request_id = getattr(req.context, "request_id", None)
    if _is_database_outage(ex):
        log.error("database unavailable", exc_info=True, extra={"request_id": request_id})
        resp.status = falcon.HTTP_503
        resp.set_header("Retry-After", "5")
        resp.media = error_body("service_unavailable", "a dependency is unavailable; retry shortly")
        return
    log.exception("unhandled error", extra={"request_id": request_id})
    resp.status = falcon.HTTP_500
    resp.media = error_body("internal_error", "an unexpected error occurred", {"request_id": request_id})


def _is_database_outage(ex: Exception) -> bool:
    """PostgreSQL down, restarting, or every pooled connection busy: 503, not 500.

    A connection that died under a statement surfaces as OperationalError or, once closed, as
    InterfaceError ("the connection is closed"); both are an outage, not a bug.
    """
    return isinstance(ex, (OperationalError, InterfaceError, PoolTimeout)) or (
        isinstance(ex, DBAPIError) and ex.connection_invalidated
    )


def register(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    # Falcon picks the most specific handler for an exception's class.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(errors.DomainError, handle_domain_error)
    app.add_error_handler(ValidationError, handle_validation_error)
