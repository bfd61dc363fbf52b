"""Dead letters: find them by queue, actor or error text; retry or delete one, a selection, or
every letter a filter matches."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import falcon

from api.console.base import ConsolePage
from api.console.rendering import check_form_token, render
from api.errors import APIError
from services.outbox import StagedMessage
from tasks.queue_inspection import QUEUES, DeadLetter, QueueInspection

#: Options a dead letter picked up on its way to the DLQ; a retry starts afresh without them.
_SPENT_OPTIONS = ("retries", "traceback", "redis_message_id", "requeue_timestamp", "eta", "max_retries")
#: The page lists this many of the matching letters; actions on "all matching" reach every one.
SHOWN = 200


@dataclass(frozen=True)
class DeadLetterFilter:
    queue: str = ""
    actor: str = ""
    error: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DeadLetterFilter:
        def one(name: str) -> str:
            value = params.get(name) or ""
            return (value[-1] if isinstance(value, list) else str(value)).strip()[:200]

        queue = one("queue")
        return cls(queue if queue in QUEUES else "", one("actor"), one("error"))

    def matches(self, letter: DeadLetter) -> bool:
        return (not self.actor or self.actor == letter.actor) and (
            not self.error or self.error.lower() in f"{letter.error}\n{letter.traceback}".lower()
        )

    def letters(self, inspector: QueueInspection, *, limit: int | None = None) -> list[DeadLetter]:
        """Matching letters, newest first; without actor or error, only the newest `limit` are read."""
        filtered = bool(self.actor or self.error)
        found = [letter for name in ([self.queue] if self.queue else QUEUES)
                 for letter in inspector.dead_letters(name, limit=None if filtered else limit)
                 if self.matches(letter)]
        return sorted(found, key=lambda letter: letter.died_at, reverse=True)[:limit]

    def count(self, inspector: QueueInspection, depths: dict[str, int]) -> int:
        if self.actor or self.error:
            return len(self.letters(inspector))
        return sum(n for name, n in depths.items() if not self.queue or name == self.queue)

    def query(self) -> str:
        return urlencode({k: v for k, v in vars(self).items() if v})


def booking_id_of(letter: DeadLetter) -> str | None:
    """Booking and payment actors take the booking's id first: the page links it."""
    try:
        return str(uuid.UUID(str(letter.args[0]))) if letter.args else None
    except ValueError:
        return None


class DeadLetters(ConsolePage):
    def data(self, req: falcon.Request) -> dict[str, Any]:
        chosen = DeadLetterFilter.from_params(req.params)
        depths = {d.name: d.dead for d in self.inspector.depths()}
        letters = chosen.letters(self.inspector, limit=None if chosen.actor or chosen.error else SHOWN)
        matching = len(letters) if chosen.actor or chosen.error else chosen.count(self.inspector, depths)
        return {"filter": chosen, "total": sum(depths.values()), "matching": matching, "letters": letters[:SHOWN]}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = self.data(req)
        actors = sorted({letter.actor for letter in data["letters"]})
        render(req, resp, "dead.html", at=self.ctx.clock(), queues=QUEUES, actors=actors, booking_id_of=booking_id_of,
               done=req.get_param("done"), **data)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = req.get_media(default_when_empty={})  # the page's form posts urlencoded fields
        if not check_form_token(req, form):
            raise APIError(falcon.HTTP_403, "forbidden", "the form token does not match")
        chosen = DeadLetterFilter.from_params(form)
        # `do` is "retry" or "delete" (the selection), with "-matching" (every letter the filter
        # matches), or with ":<queue>/<redis id>" (one letter, from its row's button).
        command, _, one = str(form.get("do", "")).partition(":")
        action = command.removesuffix("-matching")
        if action not in ("retry", "delete"):
            raise APIError(falcon.HTTP_422, "invalid_action", "do is retry or delete, for the selection, "
                           "-matching or :<queue>/<redis id>")
        targets = self._targets(one or form.get("letter") or [], chosen if command.endswith("-matching") else None)
        handled = sum(self._act(action, queue, redis_id) for queue, redis_id in targets)
        raise falcon.HTTPSeeOther(f"/ops/dead?{chosen.query()}&done={action}+{handled}".replace("?&", "?"))

    def _targets(self, picked: str | list[str], matching: DeadLetterFilter | None) -> list[tuple[str, str]]:
        if matching is not None:
            return [(letter.queue, letter.redis_id) for letter in matching.letters(self.inspector)]
        picked = [picked] if isinstance(picked, str) else picked
        return [(queue, redis_id) for queue, _, redis_id in (p.partition("/") for p in picked) if queue in QUEUES]

    def _act(self, action: str, queue: str, redis_id: str) -> bool:
        message = self.inspector.take_dead_letter(queue, redis_id)
        if message is None:
            return False  # taken by another operator meanwhile
        if action == "retry":
            options = {k: v for k, v in (message.get("options") or {}).items() if k not in _SPENT_OPTIONS}
            self.ctx.dispatch([StagedMessage(
                uuid.UUID(message["message_id"]), message["queue_name"], message["actor_name"],
                tuple(message.get("args") or ()), options,
            )])
        return True


class DeadLettersJson(DeadLetters):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.data(req)
