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
