"""Importing a catalog document (`bookings catalog import FILE`, `bookings seed --demo`).

The document holds the API's own bodies (events name their venue by `venue_ref`), validated by
the same rules (services.catalog_documents) and written by the same service functions, in one unit of work: a file is
imported whole or not at all. Objects are matched by `ref`, so importing the same file again
changes nothing, and a changed file updates what changed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db.models import Event, Resource, Venue
from db.queries import catalog_writes as writes
from db.unit_of_work import UnitOfWork
from domain.errors import InvalidRequest
from services import catalog as operations
from services.catalog import Change
from services.catalog_documents import CatalogDocument


@dataclass
class ImportReport:
    #: (kind, change) -> how many: ("venue", Change.CREATED) -> 1
    counts: Counter[tuple[str, Change]] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        return [
            f"{kind}s: " + ", ".join(f"{self.counts[(kind, change)]} {change}" for change in Change)
            for kind in ("venue", "event", "resource")
        ]


def parse_document(raw: Any) -> CatalogDocument:
    return CatalogDocument.model_validate(raw)


def import_catalog(
    sessions: sessionmaker[Session], document: CatalogDocument, *, now: datetime, keep_existing: bool = False
) -> ImportReport:
    """Create what is new, update what changed; with `keep_existing`, leave every object that
    exists alone (the demo seed must not move a running demo's events)."""
    report = ImportReport()
    with UnitOfWork(sessions) as uow:
        for venue in document.venues:
            if not _kept(uow, report, "venue", Venue, venue.ref, keep_existing):
                report.counts[("venue", operations.put_venue(uow, venue.spec(), now=now)[1])] += 1
        for event in document.events:
            if not _kept(uow, report, "event", Event, event.ref, keep_existing):
                venue_id = _venue_id(uow, event.venue_ref) if event.venue_ref else None
                report.counts[("event", operations.put_event(uow, event.spec(venue_id), now=now)[1])] += 1
        for resource in document.resources:
            if not _kept(uow, report, "resource", Resource, resource.ref, keep_existing):
                spec = operations.ResourceSpec(resource.values(complete=True))
                report.counts[("resource", operations.put_resource(uow, spec)[1])] += 1
        uow.commit()
    return report


def _kept(uow: UnitOfWork, report: ImportReport, kind: str, model: Any, ref: str | None, keep: bool) -> bool:
    if keep and ref is not None and writes.by_ref(uow.session, model, ref) is not None:
        report.counts[(kind, Change.UNCHANGED)] += 1
        return True
    return False


def _venue_id(uow: UnitOfWork, ref: str) -> Any:
    venue = writes.by_ref(uow.session, Venue, ref)
    if venue is None:
        raise InvalidRequest(f"no venue with ref {ref!r}", details=[{"field": "venue_ref", "code": "unknown"}])
    return venue.id  # type: ignore[attr-defined]


