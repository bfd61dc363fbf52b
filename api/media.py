"""Reading request bodies and query strings into validated models, with clear 4xx errors."""

from __future__ import annotations

from typing import Any, TypeVar

import falcon
import orjson
from pydantic import BaseModel, ValidationError

from api.errors import APIError, field_errors

Model = TypeVar("Model", bound=BaseModel)

MAX_JSON_DEPTH = 16


def read_json(req: falcon.Request, max_bytes: int) -> Any:
    """The parsed JSON body: 415 if it is not JSON, 413 if too large, 400 if malformed."""
    if req.content_type is None or req.content_type.split(";")[0].strip().lower() != "application/json":
        raise APIError(falcon.HTTP_415, "unsupported_media_type", "send the body as application/json")
    if req.content_length is not None and req.content_length > max_bytes:
        raise APIError(falcon.HTTP_413, "payload_too_large", f"the body is larger than {max_bytes} bytes")
    raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise APIError(falcon.HTTP_413, "payload_too_large", f"the body is larger than {max_bytes} bytes")
    try:
        # RFC 8259 lets a parser ignore a byte order mark; some clients send one.
        body = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
    except (ValueError, RecursionError) as ex:
        raise APIError(falcon.HTTP_400, "malformed_json", f"the body is not valid JSON: {ex}") from None
    if _depth(body) > MAX_JSON_DEPTH:
        raise APIError(falcon.HTTP_400, "malformed_json", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return body


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def parse_body(model: type[Model], body: Any) -> Model:
    try:
        return model.model_validate(body)
    except ValidationError as ex:
        raise APIError(
            falcon.HTTP_422, "validation_error", "the request body is not valid", details=field_errors(ex)
        ) from None


def parse_query(model: type[Model], req: falcon.Request) -> Model:
    params = {key: value for key, value in req.params.items() if value != ""}
    repeated = sorted(key for key, value in params.items() if isinstance(value, list))
    if repeated:
        raise APIError(
            falcon.HTTP_400, "invalid_query", "query parameters must not repeat", details={"params": repeated}
        )
    try:
        return model.model_validate(params)
    except ValidationError as ex:
        raise APIError(
            falcon.HTTP_400, "invalid_query", "the query string is not valid", details=field_errors(ex)
        ) from None
