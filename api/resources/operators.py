"""What the catalog's write routes share: only operator keys write, each POST or PATCH once
per Idempotency-Key, answered with the object written."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import falcon

from api.errors import APIError
from api.resources.bookings import idempotent_request
from db.unit_of_work import UnitOfWork
from services.context import Context
from services.idempotency import Outcome, Reply, execute_once
from services.outbox import StagedMessage

#: What a command answers: status, body, Location (or None), messages to send after commit.
Answer = tuple[int, dict[str, Any], str | None, Sequence[StagedMessage]]


def require_operator(req: falcon.Request) -> None:
    """Clients read the catalog; a client key on a write route is a 403."""
    if not req.context.principal.is_operator:
        raise APIError(falcon.HTTP_403, "forbidden", "this route needs an operator key")


def write_once(ctx: Context, req: falcon.Request, body: Any, command: Callable[[UnitOfWork], Answer]) -> Reply:
    """Run a catalog command in one unit of work, once per Idempotency-Key."""

    def answered(uow: UnitOfWork) -> Outcome:
        status, answer, location, messages = command(uow)
        return Outcome(Reply(status, answer, location), messages)

    return execute_once(ctx, idempotent_request(req, body), answered)
