"""`bookings dev` the second time: it starts again at once after Ctrl-C, keeps its keys, and leaves
its banner where a person finds it after the logs scroll it away."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from devtools import devstack
from devtools.local_services import free_port


def _leave_time_wait(port: int) -> None:
    """What a stopped API leaves behind: its listener gone, its side of a connection in TIME_WAIT."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its end waits in TIME_WAIT for a minute
        time.sleep(0.05)
        client.close()


def test_the_port_check_passes_within_a_second_of_a_stop_that_left_time_wait_sockets():
    port = free_port()
    _leave_time_wait(port)
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # the control: a bind without SO_REUSEADDR still fails here
    started = time.monotonic()
    devstack._check_port_free(port)
    assert time.monotonic() - started < 1.0


def test_the_port_check_refuses_a_port_someone_listens_on():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(devstack.DevStackError, match="is in use"):
            devstack._check_port_free(listener.getsockname()[1])


@pytest.mark.commits
def test_the_demo_keys_survive_a_restart_and_are_replaced_when_the_database_forgets_them(runtime, settings, tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = {**devstack.os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    saved = tmp_path / ".local" / "dev" / "keys.json"

    def keys_of_a_run() -> tuple[str | None, str | None]:
        # _dev_keys keeps them under root/.local/dev: a temporary root, the commands from the checkout.
        original = devstack._new_key
        devstack._new_key = lambda _, e, *args: original(root, e, *args)  # type: ignore[assignment]
        try:
            return devstack._dev_keys(tmp_path, env)
        finally:
            devstack._new_key = original  # type: ignore[assignment]

    first = keys_of_a_run()
    assert all(first) and keys_of_a_run() == first
    assert json.loads(saved.read_text())[settings.database_url] == {"demo": first[0], "operator": first[1]}
    assert saved.stat().st_mode & 0o077 == 0
    with runtime.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM clients")
    renewed = keys_of_a_run()
    assert all(renewed) and renewed != first


def test_the_banner_is_written_to_the_readme_with_what_a_restart_loses(tmp_path, capsys):
    env = {"STRIPE_API_BASE": "http://127.0.0.1:1", "DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"}
    devstack._show_banner(tmp_path, 8000, "bk_demo", "bk_operator", env)
    readme = (tmp_path / ".local" / "dev" / "README.txt").read_text()
    assert "bk_demo" in readme and "bk_operator" in readme and "http://127.0.0.1:8000/docs" in readme
    assert "cannot be confirmed" in readme and f"kill -INT {devstack.os.getpid()}" in readme
    assert "bk_demo" in capsys.readouterr().out
