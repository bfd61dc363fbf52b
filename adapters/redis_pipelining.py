"""A Redis client whose commands from concurrent callers share round trips.

Every accepted booking sends two Redis commands: the rate limiter's script and the enqueue's.
Sent one by one, each pays a round trip: the client's send and wait, the kernel's work for a
loopback packet each way, and for a gevent worker a switch through its hub; measured under load
that was about a sixth of the web process's CPU per booking, far more than Redis's own work.

This client sends what its callers ask for while no round trip of its own is out at once, as
before; the commands that arrive while one is out go together in the next, as one pipeline
(`db.group_commit.Combiner`, the same flat combining as group commit). Each caller gets its own
reply or its own error; a connection error fails the commands that were in its pipeline, as it
would have failed each of them alone. No command is sent in a MULTI transaction, so nothing
changes in what Redis sees except that the commands come in one write.

Use it for short commands only: a blocking command (BLPOP, a subscription) would hold back every
caller's command behind it. The web process's limiter and broker client send only scripts; the
console's reads of the queues go through a plain client of their own. Give it a socket timeout
and a `wait_timeout`, so that a silent Redis costs a caller a bounded wait.
"""

from __future__ import annotations

from typing import Any

import redis

from db.group_commit import Combiner, own_copy

#: Commands in one pipeline at most.
MAX_PIPELINE = 128

_Command = tuple[tuple[Any, ...], dict[str, Any]]


class PipelinedRedis(redis.Redis):
    def __init__(self, *args: Any, wait_timeout: float, **kwargs: Any) -> None:
        """`wait_timeout`: a command that no round trip has taken within it fails with Redis's
        TimeoutError, as a round trip that long would have. With Redis silent, each round trip
        before it takes the socket timeout; without this a caller could wait for many."""
        super().__init__(*args, **kwargs)
        self._combiner: Combiner[_Command, Any] = Combiner(
            self._send, max_batch=MAX_PIPELINE, wait_timeout=wait_timeout, unavailable=redis.exceptions.TimeoutError,
        )

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self._combiner((args, options))

    @property
    def round_trips(self) -> int:
        return self._combiner.batches

    def _send(self, commands: list[_Command]) -> list[Any]:
        if len(commands) == 1:
            (args, options), = commands
            try:
                return [super().execute_command(*args, **options)]  # type: ignore[no-untyped-call]
            except Exception as exc:  # noqa: BLE001 - raised in its caller
                return [exc]
        try:
            with self.pipeline(transaction=False) as pipeline:
                for args, options in commands:
                    pipeline.execute_command(*args, **options)  # type: ignore[no-untyped-call]
                # Each command's error comes back in its place, to be raised in its own caller.
                return list(pipeline.execute(raise_on_error=False))
        except Exception as exc:  # noqa: BLE001 - the connection failed under all of them
            return [own_copy(exc) for _ in commands]
