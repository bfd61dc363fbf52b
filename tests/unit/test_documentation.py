"""The documentation keeps up with the code: settings, links, the README's size and its walk-through.

Static checks only: files are read, `Settings.from_env` is run on a made-up environment, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
ENV_EXAMPLE = ROOT / ".env.example"
WALKTHROUGH = ROOT / "scripts" / "walkthrough.sh"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "bench" / "results").glob("*.md"))]

_FENCED_CODE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


class RecordingEnvironment(Mapping[str, str]):
    """An environment that remembers every name looked up in it, set or not."""

    def __init__(self, values: dict[str, str]) -> None:
        self.given = values
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        # Mapping's get() and `in` come through here too.
        self.read.add(name)
        return self.given[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.given)

    def __len__(self) -> int:
        return len(self.given)


def variables_read_by_settings() -> set[str]:
    env = RecordingEnvironment(
        {"DATABASE_URL": "postgresql://u@127.0.0.1:1/db", "REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    Settings.from_env(env)
    return env.read


def prose(path: Path) -> str:
    """The document without its fenced code blocks, where a bracket is not a link."""
    return _FENCED_CODE.sub("", path.read_text())


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", prose(path), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_finding_the_settings_variables_sees_what_from_env_reads() -> None:
    read = variables_read_by_settings()
    assert {"DATABASE_URL", "REDIS_URL", "STRIPE_API_KEY", "CHECKOUT_RETURN_URL"} <= read
    assert len(read) > 30


def test_every_variable_settings_read_is_in_env_example() -> None:
    assigned = set(re.findall(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    missing = sorted(variables_read_by_settings() - assigned)
    assert not missing, f".env.example does not set {missing}"


def test_every_variable_settings_read_is_documented_in_operations() -> None:
    documented = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", OPERATIONS.read_text()))
    missing = sorted(variables_read_by_settings() - documented)
    assert not missing, f"docs/operations.md does not document {missing}"


def test_the_readme_is_under_15000_bytes() -> None:
    assert len(README.read_bytes()) < 15_000


def test_every_relative_link_in_the_documentation_reaches_a_file_and_its_heading() -> None:
    broken = []
    for document in DOCUMENTS:
        for target in _LINK.findall(prose(document)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto: and the like are not ours to check
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_walkthrough_quotes_lines_of_the_script_the_tests_run() -> None:
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    walkthrough = next(block for block in blocks if "wait_for" in block)
    script_lines = {line.strip() for line in WALKTHROUGH.read_text().splitlines()}
    quoted = [line.strip() for line in walkthrough.splitlines() if line.strip()]
    assert len(quoted) > 10
    assert [line for line in quoted if line not in script_lines] == []
