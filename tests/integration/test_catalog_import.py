"""`bookings catalog import FILE`: the API's bodies in one file, repeatable by ref."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import main
from tests.support import new_key


def _env(settings: Any) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}


def _document(tag: str, *, price: int = 4000, seats: int = 3) -> dict[str, Any]:
    return {
        "venues": [{"ref": f"club-{tag}", "name": "Club", "timezone": "Europe/Berlin",
                    "seats": [{"row": "A", "number": n, "tier": "floor"} for n in range(1, seats + 1)]}],
        "events": [
            {"ref": f"gig-{tag}", "name": "Gig", "venue_ref": f"club-{tag}", "starts_at": "2031-05-01T20:00:00Z",
             "ends_at": "2031-05-01T23:00:00Z", "currency": "EUR", "prices": {"floor": price}},
            {"ref": f"rave-{tag}", "name": "Rave", "capacity": 300, "starts_at": "2031-05-02T20:00:00Z",
             "ends_at": "2031-05-03T04:00:00Z", "currency": "EUR", "prices": {"general": 2000}},
        ],
        "resources": [{"ref": f"studio-{tag}", "name": "Studio", "category": "import_test", "rate_per_minute": 50,
                       "currency": "EUR", "timezone": "America/New_York",
                       "weekly_hours": {"mon": [["10:00", "14:00"], ["15:00", "19:00"]]}}],
    }


def _import(tmp_path: Path, settings: Any, document: dict[str, Any]) -> list[str]:
    path = tmp_path / f"{new_key()}.json"
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["catalog", "import", str(path)], env=_env(settings))
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()


@pytest.mark.commits  # the CLI writes through an engine of its own
def test_importing_a_file_twice_changes_nothing_and_a_changed_file_updates_what_changed(tmp_path, settings, api, runtime):
    tag = new_key()[:8]
    assert _import(tmp_path, settings, _document(tag)) == [
        "venues: 1 created, 0 updated, 0 unchanged", "events: 2 created, 0 updated, 0 unchanged",
        "resources: 1 created, 0 updated, 0 unchanged",
    ]
    assert _import(tmp_path, settings, _document(tag)) == [
        "venues: 0 created, 0 updated, 1 unchanged", "events: 0 created, 0 updated, 2 unchanged",
        "resources: 0 created, 0 updated, 1 unchanged",
    ]
    assert _import(tmp_path, settings, _document(tag, price=4500, seats=4)) == [
        "venues: 0 created, 1 updated, 0 unchanged", "events: 0 created, 1 updated, 1 unchanged",
        "resources: 0 created, 0 updated, 1 unchanged",
    ]
    gig = next(e for e in api.get("/v1/events", limit=200).json["items"] if e["ref"] == f"gig-{tag}")
    assert gig["prices"] == {"floor": 4500}
    assert len(api.get(f"/v1/events/{gig['id']}/seats").json["seats"]) == 4


@pytest.mark.commits
def test_a_file_the_api_would_refuse_is_refused_whole(tmp_path, settings, runtime):
    document = _document(new_key()[:8])
    document["events"][0]["venue_ref"] = "no-such-venue"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["catalog", "import", str(path)], env=_env(settings))
    assert result.exit_code != 0 and "no venue with ref" in result.output
    with runtime.context.sessions() as session:
        from sqlalchemy import text

        assert session.execute(text("SELECT count(*) FROM venues WHERE ref = :r"),
                               {"r": document["venues"][0]["ref"]}).scalar() == 0


def _seat_ids(api: Any, event_id: str) -> dict[int, str]:
    return {seat["number"]: seat["id"] for seat in api.get(f"/v1/events/{event_id}/seats").json["seats"]}


@pytest.mark.commits
def test_a_layout_that_drops_seats_deletes_the_unbooked_and_retires_the_booked(tmp_path, settings, api, runtime, worker):
    from sqlalchemy import text

    from tests.support import seat_request, wait_for_statuses

    tag = new_key()[:8]
    _import(tmp_path, settings, _document(tag, seats=4))
    gig = next(e for e in api.get("/v1/events", limit=200).json["items"] if e["ref"] == f"gig-{tag}")
    before = _seat_ids(api, gig["id"])
    held = api.book(seat_request(gig["id"], [before[3]])).json["id"]
    wait_for_statuses(runtime.context.sessions, [held], {"authorized"})

    smaller = _document(tag, seats=2)
    assert _import(tmp_path, settings, smaller)[0] == "venues: 0 created, 1 updated, 0 unchanged"
    retired_at = "SELECT id, retired_at FROM seats WHERE id = ANY(:ids) ORDER BY number"
    with runtime.context.sessions() as session:
        rows = session.execute(text(retired_at), {"ids": [before[3], before[4]]}).all()
    assert [(str(seat_id), at is not None) for seat_id, at in rows] == [(before[3], True)]  # seat 4 deleted
    # The live booking still shows on the map; the venue no longer counts the seat; nobody else gets it.
    assert {n: s["status"] for n, s in _by_number(api, gig["id"]).items()} == {1: "available", 2: "available", 3: "held"}
    venue = next(v for v in api.get("/v1/venues", limit=200).json["items"] if v["ref"] == f"club-{tag}")
    assert venue["seat_count"] == 2
    assert api.book(seat_request(gig["id"], [before[3]])).status_code == 422

    # The same file again changes nothing, not even when the seat was retired.
    assert _import(tmp_path, settings, smaller)[0] == "venues: 0 created, 0 updated, 1 unchanged"
    with runtime.context.sessions() as session:
        assert session.execute(text(retired_at), {"ids": [before[3]]}).all() == rows

    # Once no live booking holds it, a retired seat is off the map; a layout that has it again brings it back.
    assert api.post(f"/v1/bookings/{held}/cancel", None, key=new_key()).status_code == 202
    wait_for_statuses(runtime.context.sessions, [held], {"cancelled"})
    assert sorted(_by_number(api, gig["id"])) == [1, 2]
    assert _import(tmp_path, settings, _document(tag, seats=4))[0] == "venues: 0 created, 1 updated, 0 unchanged"
    after = _seat_ids(api, gig["id"])
    assert after[3] == before[3] and after[4] != before[4] and len(after) == 4


def _by_number(api: Any, event_id: str) -> dict[int, dict[str, Any]]:
    return {seat["number"]: seat for seat in api.get(f"/v1/events/{event_id}/seats").json["seats"]}
