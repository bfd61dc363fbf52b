"""The demo catalog: db/demo_catalog.json, imported as an operator's file would be.

A seated venue of 120 seats with two events, a general-admission event, and a dozen resources
with weekly hours. Dates in the file are written `{day+N}` (N days from today, UTC), so the demo
is always on sale. Idempotent: objects already there (by ref) are left as they are.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

DEMO_CATALOG = Path(__file__).with_name("demo_catalog.json")
_DAY = re.compile(r"\{day\+(\d+)\}")


def demo_document(today: datetime) -> object:
    text = _DAY.sub(lambda m: (today + timedelta(days=int(m.group(1)))).date().isoformat(), DEMO_CATALOG.read_text())
    return json.loads(text)


def seed_demo(sessions: sessionmaker[Session], *, now: datetime | None = None) -> list[str]:
    """Import the demo catalog; returns the import's report lines."""
    from services.catalog_import import import_catalog, parse_document

    now = now or datetime.now(UTC)
    document = parse_document(demo_document(now))
    return import_catalog(sessions, document, now=now, keep_existing=True).lines()
