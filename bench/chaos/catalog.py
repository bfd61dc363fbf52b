"""What the campaign creates before the load: the clients' keys and the inventory they book."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from testkit.open_events import make_open_events


def client_keys(database_url: str, count: int) -> tuple[list[str], str]:
    from db.engine import make_engine, make_sessions, transaction
    from db.queries.clients import create_client

    engine = make_engine(database_url, pool_size=1)
    with transaction(make_sessions(engine)) as session:
        keys = [create_client(session, f"chaos-{i}")[1] for i in range(count)]
        operator_key = create_client(session, "chaos-operator", operator=True)[1]
    engine.dispose()
    return keys, operator_key


def make_catalog(database_url: str, open_seats: int) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        event_id, venue_id = conn.execute("SELECT id, venue_id FROM events ORDER BY starts_at LIMIT 1").fetchone()
        seats = [r[0] for r in conn.execute(
            "SELECT id FROM seats WHERE venue_id = %s ORDER BY row, number", (venue_id,))]
        resources = [r[0] for r in conn.execute("SELECT id FROM resources ORDER BY name LIMIT 3")]
    now = datetime.now(UTC)
    day = (now + timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
    # One event well ahead (a client's cancel refunds all) and one tomorrow (it refunds half).
    open_events = make_open_events(database_url, seats=open_seats,
                                   starts=[now + timedelta(days=4), now + timedelta(hours=30)])
    return {"event_id": str(event_id), "seats": [str(s) for s in seats], "resources": [str(r) for r in resources],
            "day": day, "open_events": [event for event, _ in open_events], "open_seats": open_events[0][1]}
