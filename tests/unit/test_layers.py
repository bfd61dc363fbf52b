"""The layers depend inward: the domain on nothing of ours but itself, the services never on the
API, the CLI or the workers; and moving code between them leaves the API's contract alone."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Packages each inner layer must not import.
OUTER = {
    "domain": {"db", "services", "api", "tasks", "adapters", "cli"},
    "services": {"api", "tasks", "cli"},
}


def imported_packages(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_finding_imports_sees_plain_and_from_imports(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("import api.app\nfrom services.catalog import put_venue\nfrom . import sibling\n")
    assert imported_packages(module) == {"api", "services"}


@pytest.mark.parametrize("layer", sorted(OUTER))
def test_a_layer_never_imports_an_outer_one(layer: str) -> None:
    wrong = {
        str(source.relative_to(ROOT)): sorted(imported_packages(source) & OUTER[layer])
        for source in (ROOT / layer).rglob("*.py")
    }
    assert {source: outer for source, outer in wrong.items() if outer} == {}


def test_the_openapi_document_is_the_one_recorded() -> None:
    """tests/data/openapi.json is the contract as published; after a deliberate change to the API,
    write it again: python -c 'import api.openapi, json; print(json.dumps(api.openapi.build_spec(),
    sort_keys=True, indent=1))' > tests/data/openapi.json"""
    from api.openapi import build_spec

    recorded = json.loads((ROOT / "tests" / "data" / "openapi.json").read_text())
    assert json.loads(json.dumps(build_spec())) == recorded
