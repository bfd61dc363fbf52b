"""`bookings` — the operators' and developers' command line: migrate, seed, run the processes, manage
API clients, inspect and replay what is stuck."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import click

from config.settings import ConfigurationError, Settings


def _settings(*, require_redis: bool = True) -> Settings:
    """The settings, or a clear error; commands that never touch Redis pass require_redis=False."""
    try:
        return Settings.from_env(require_redis=require_redis)
    except ConfigurationError as ex:
        raise click.ClickException(str(ex)) from None


def _sessions(settings: Settings):  # type: ignore[no-untyped-def]
    from db.engine import make_engine, make_sessions

    return make_sessions(make_engine(settings.database_url, pool_size=2, application_name="bookings-cli"))


@click.group()
def main() -> None:
    """Booking and payment pipeline."""


@main.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the latest revision."""
    from db.migrate import upgrade

    upgrade(_settings(require_redis=False).database_url)
    click.echo("migrations applied")


@main.command()
@click.option("--demo", is_flag=True, help="Seed the demo catalog.")
def seed(demo: bool) -> None:
    """Seed the demo catalog (idempotent): imports db/demo_catalog.json."""
    from db.seed import seed_demo

    if not demo:
        raise click.UsageError(
            "the demo catalog is the only one to seed: `bookings seed --demo` imports db/demo_catalog.json"
            " (a seated venue with two events, a general-admission event, a dozen resources with weekly"
            " hours; running it again changes nothing)"
        )
    for line in seed_demo(_sessions(_settings(require_redis=False))):
        click.echo(line)
    click.echo("demo catalog seeded")


@main.group()
def catalog() -> None:
    """The catalog: venues, events and resources."""


@catalog.command("import")
@click.argument("file", type=click.File("rb"))
def catalog_import(file: BinaryIO) -> None:
    """Import a JSON document {"venues": [...], "events": [...], "resources": [...]} (the API's
    bodies; events name their venue by venue_ref). Repeatable: objects are matched by ref."""
    import orjson
    from pydantic import ValidationError

    from domain.errors import DomainError
    from services.catalog_import import import_catalog, parse_document
    from services.context import utc_now

    try:
        document = parse_document(orjson.loads(file.read()))
        report = import_catalog(_sessions(_settings()), document, now=utc_now())
    except orjson.JSONDecodeError as ex:
        raise click.ClickException(f"not JSON: {ex}") from None
    except ValidationError as ex:
        raise click.ClickException(f"not a valid catalog:\n{ex}") from None
    except DomainError as ex:
        raise click.ClickException(f"{ex.message}: {ex.details}") from None
    for line in report.lines():
        click.echo(line)


@main.group()
def clients() -> None:
    """API clients and their keys."""


@clients.command("create")
@click.argument("name")
@click.option("--operator", is_flag=True, help="Give the client the operator role.")
def clients_create(name: str, operator: bool) -> None:
    """Create an API client; its key is the last line printed (it is shown only once)."""
    from db.engine import transaction
    from db.queries.clients import create_client

    if not name.strip():
        raise click.BadParameter("a client needs a name that says who holds the key", param_hint="NAME")
    with transaction(_sessions(_settings(require_redis=False))) as session:
        client, api_key = create_client(session, name, operator=operator)
    click.echo(f"client {client.id} ({client.role}) created; its API key follows")
    click.echo(api_key)


@clients.command("revoke")
@click.argument("client_id", type=click.UUID)
def clients_revoke(client_id: uuid.UUID) -> None:
    """Revoke a client's key at once."""
    from db.engine import transaction
    from db.queries.clients import revoke_client
    from services.context import utc_now

    with transaction(_sessions(_settings(require_redis=False))) as session:
        revoked = revoke_client(session, client_id, utc_now())
    if not revoked:
        raise click.ClickException("no such active client")
    click.echo(f"client {client_id} revoked")


@main.command()
@click.option("--processes", default=2, show_default=True, help="Worker processes.")
@click.option("--threads", default=8, show_default=True, help="Threads per process.")
@click.option("--queues", "-Q", multiple=True, help="Only these queues (default: all).")
def worker(processes: int, threads: int, queues: tuple[str, ...]) -> None:
    """Run Dramatiq workers (`dramatiq tasks.worker`), restarted at once if one dies."""
    from config.logging import configure_logging
    from tasks.supervisor import supervise

    settings = _settings()
    configure_logging("worker")
    _require_redis(settings)
    args = ["tasks.worker", "--processes", str(processes), "--threads", str(threads)]
    if queues:
        args += ["--queues", *queues]
    sys.exit(supervise(args, metrics_at=settings.worker_metrics_bind))


def _require_redis(settings: Settings) -> None:
    """Fail at start, naming the setting, when Redis cannot be reached: Dramatiq alone would
    log a CRITICAL line every few seconds forever. Once running, outages are retried."""
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as ex:
        raise click.ClickException(
            f"cannot reach Redis at REDIS_URL={_without_password(settings.redis_url)} ({ex});"
            " start Redis or point REDIS_URL at it"
        ) from None
    finally:
        client.close()


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


@main.command()
def scheduler() -> None:
    """Run the scheduler: the leader enqueues expiry, outbox relay, reconciliation, key purge."""
    import signal
    import threading

    from config.logging import configure_logging
    from tasks.scheduler import run_scheduler

    configure_logging("scheduler")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    run_scheduler(_settings(), stop)


@main.command()
@click.argument("booking_id", type=click.UUID)
def reconcile(booking_id: uuid.UUID) -> None:
    """Drive one booking forward now: finish an unrecorded Stripe step, capture, release."""
    from db.models import Booking
    from services.advance import advance_booking
    from tasks.runtime import build_worker

    runtime = build_worker(_settings())
    with runtime.context.sessions() as session:
        known = session.get(Booking, booking_id) is not None
    # Asked first, so an unknown id is said once, not also by the service's log line.
    status = advance_booking(runtime.context, booking_id) if known else None
    if status is None:
        raise click.ClickException(f"no booking {booking_id}")
    click.echo(f"booking {booking_id} is {status}")


@main.command()
def archive() -> None:
    """Move terminal bookings older than ARCHIVE_AFTER_DAYS to the archive tables now."""
    from services.maintenance import archive_terminal_bookings
    from tasks.runtime import build_worker

    moved = archive_terminal_bookings(build_worker(_settings()).context)
    click.echo(f"{moved} bookings archived")


@main.command()
def expire() -> None:
    """Expire held bookings past their expiry now (what the scheduler does every minute)."""
    from services.expiry import expire_due_bookings
    from tasks.runtime import build_worker

    report = expire_due_bookings(build_worker(_settings()).context)
    click.echo(f"{report.expired} bookings expired, {report.voided} authorizations voided")


@main.group()
def webhooks() -> None:
    """The Stripe webhook ledger."""


@webhooks.command("replay")
@click.argument("event_id")
def webhooks_replay(event_id: str) -> None:
    """Apply a ledger event again (safe: an event already reflected is ignored with a reason)."""
    from adapters.stripe import provider_event
    from services.webhooks import process_event
    from tasks.runtime import build_worker

    runtime = build_worker(_settings())
    outcome = process_event(runtime.context, event_id, provider_event, replay=True)
    if outcome is None:
        raise click.ClickException("no such event in the ledger")
    click.echo(f"event {event_id}: {outcome}")


@main.command("relay-outbox")
def relay_outbox() -> None:
    """Send outbox messages that were committed but never reached (or were lost by) Redis."""
    from services.context import utc_now
    from services.outbox import relay
    from tasks.broker import make_broker, make_dispatcher

    settings = _settings()
    sent = relay(_sessions(settings), make_dispatcher(make_broker(settings)),
                 older_than=settings.outbox_relay_after, now=utc_now())
    click.echo(f"{sent} messages re-sent")


@main.command()
@click.option("--port", default=int(os.environ.get("PORT", "8000")), show_default=True)
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
def dev(port: int, workers: int) -> None:
    """Everything for a local run in one foreground command; Ctrl-C stops all of it."""
    _devstack().run_dev(Path.cwd(), port=port, workers=workers)


def _devstack() -> ModuleType:
    """`devtools.devstack`, from the repository checkout: the wheel leaves devtools/ out.

    An editable install maps only the shipped packages, so devtools/ is looked for beside cli/,
    where a checkout has it; an installed wheel has none and gets a clear answer.
    """
    try:
        return importlib.import_module("devtools.devstack")
    except ModuleNotFoundError as ex:
        if ex.name != "devtools":
            raise
    package = Path(__file__).resolve().parents[1] / "devtools" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "devtools", package, submodule_search_locations=[str(package.parent)]
    )
    if not package.is_file() or spec is None or spec.loader is None:
        raise click.ClickException(
            "`bookings dev` needs the development tools (devtools/), which only a checkout of the"
            " repository has: clone it, then `make dev`"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules["devtools"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("devtools.devstack")


if __name__ == "__main__":
    main()
