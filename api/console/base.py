"""What every console page shares: operator authentication and its collaborators."""

from __future__ import annotations

from services.context import Context
from tasks.queue_inspection import QueueInspection
from tasks.worker_activity import WorkerRegistry


class ConsolePage:
    """An operators' page or its JSON twin: an operator key as Bearer token or Basic password."""

    auth = "operator"
    challenge = "Basic"

    def __init__(self, ctx: Context, inspector: QueueInspection, registry: WorkerRegistry) -> None:
        self.ctx = ctx
        self.inspector = inspector
        self.registry = registry
