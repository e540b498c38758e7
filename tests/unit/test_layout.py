"""What deploys and what does not: the functions and shared/ never import the local tooling in devtools/."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_nothing_that_deploys_imports_devtools() -> None:
    deployed = [*(REPO / "shared").rglob("*.py"), *(REPO / "functions").rglob("*.py")]
    offenders = {
        str(path.relative_to(REPO)): sorted(name for name in _imports(path) if name.split(".")[0] == "devtools")
        for path in deployed
    }
    assert {path: names for path, names in offenders.items() if names} == {}
    assert len(deployed) > 30


def test_the_local_tooling_lives_in_devtools() -> None:
    tooling = {"cli", "migrate", "devserver", "local_app", "local_http", "demo", "localstack", "localstripe_store"}
    assert {name for name in tooling if (REPO / "shared" / f"{name}.py").exists()} == set()
    assert {name for name in tooling if not (REPO / "devtools" / f"{name}.py").exists()} == set()
