"""The operator commands, run as the `bookings` CLI against this run's database."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from cli.main import main
from testkit.stripe_webhooks import stripe_event
from tests.support import (
    first_event,
    post_webhook,
    seat_request,
    stripe_client,
    wait_for_ledger,
    wait_for_statuses,
)

# The commands build their own engine from the environment: they see only committed rows.
pytestmark = pytest.mark.commits


def _env(settings) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
        "STRIPE_API_BASE": settings.stripe_api_base, "STRIPE_API_KEY": settings.stripe_api_key,
        "BROKER_NAMESPACE": settings.broker_namespace,
    }


def test_clients_create_prints_the_key_last_and_it_authenticates(app, runtime, settings):
    result = CliRunner().invoke(main, ["clients", "create", "partner", "--operator"], env=_env(settings))
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("bk_")
    assert app.simulate_get("/v1/events", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_replaying_a_ledger_event_does_not_apply_it_twice(app, api, runtime, worker, settings):
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[:1])).json
    wait_for_statuses(runtime.context.sessions, [booking["id"]], {"authorized"})
    intent = stripe_client(settings.stripe_api_base).v1.payment_intents.retrieve(
        api.get(f"/v1/bookings/{booking['id']}").json["payment"]["provider_ref"]
    ).to_dict()
    event = stripe_event("payment_intent.amount_capturable_updated", intent)
    assert post_webhook(app, event, settings.stripe_webhook_secret).status_code == 200
    wait_for_ledger(runtime.context.sessions, event["id"])

    result = CliRunner().invoke(main, ["webhooks", "replay", event["id"]], env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "ignored" in result.output
    missing = CliRunner().invoke(main, ["webhooks", "replay", "evt_missing"], env=_env(settings))
    assert missing.exit_code != 0


def test_reconcile_drives_a_booking_whose_message_was_lost(api, runtime, settings):
    event_id, seats = first_event(runtime.context.sessions)
    booking = api.book(seat_request(event_id, seats[1:2])).json  # no worker runs: still requested
    result = CliRunner().invoke(main, ["reconcile", booking["id"]], env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "authorized" in result.output


def test_bookings_dev_finds_the_development_tools_of_an_editable_checkout(tmp_path):
    # An editable install maps only the shipped packages: run from elsewhere, with no repository
    # root on sys.path, `bookings dev` still finds devtools/ beside cli/.
    import subprocess
    import sys

    probe = "from cli.main import _devstack; print(_devstack().__file__)"
    found = subprocess.run([sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip().endswith("devtools/devstack.py")


def test_migrate_seed_and_clients_need_no_redis(runtime, settings):
    env = {**_env(settings), "REDIS_URL": ""}
    for args in (["migrate"], ["seed", "--demo"], ["clients", "create", "no-redis"]):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 0, (args, result.output)


def test_a_client_without_a_name_is_refused(runtime, settings):
    for name in ("", "   "):
        result = CliRunner().invoke(main, ["clients", "create", name], env=_env(settings))
        assert result.exit_code == 2 and "a client needs a name" in result.output


def test_seed_without_demo_says_what_it_would_seed(runtime, settings):
    result = CliRunner().invoke(main, ["seed"], env=_env(settings))
    assert result.exit_code == 2 and "bookings seed --demo" in result.output


def test_reconciling_an_unknown_booking_says_so_once(runtime, settings):
    import subprocess
    import sys

    unknown = "00000000-0000-0000-0000-000000000001"
    result = subprocess.run([sys.executable, "-m", "cli.main", "reconcile", unknown], env={**os.environ, **_env(settings)},
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert said == [f"Error: no booking {unknown}"]


def test_a_worker_that_cannot_reach_redis_stops_at_once_naming_redis_url(settings):
    import subprocess
    import sys
    import time

    env = {**os.environ, **_env(settings), "REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cli.main", "worker"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and time.monotonic() - started < 10
    assert "REDIS_URL=redis://:***@127.0.0.1:1/0" in result.stderr and "hunter2" not in result.stderr
