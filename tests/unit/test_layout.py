"""What deploys and what does not: the functions and shared/ never import the local tooling in devtools/."""

from __future__ import annotations

import ast
import re
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


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def test_the_readme_and_the_architecture_page_describe_the_tree_as_it_is() -> None:
    """Every subpackage of shared/ is in the README's Layout, every module of shared/ in docs/architecture.md's table of
    the shared package, and every folder either names exists (tests/unit/test_doc_links.py checks the paths)."""
    packages = sorted(p.parent.name for p in (REPO / "shared").glob("*/__init__.py"))
    modules = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "shared").rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    )
    layout = _section((REPO / "README.md").read_text(), "## Layout")
    architecture = _section((REPO / "docs" / "architecture.md").read_text(), "### The shared package")
    assert [name for name in packages if f"  {name}/ " not in layout] == []
    listed = set(re.findall(r"^  ([a-z_]+)/ ", layout, re.M))
    assert sorted(listed) == packages, "the README lists a subpackage shared/ does not have"
    assert [module for module in modules if f"`{module}`" not in architecture] == []
    assert len(packages) >= 11 and len(modules) > 30


def test_every_error_class_is_in_shared_errors() -> None:
    """Private signals inside one module (a leading underscore) may stay there; every error anyone else catches or a
    handler maps lives in shared/errors.py."""
    elsewhere = []
    for path in [*(REPO / "shared").rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        if path == REPO / "shared" / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {getattr(base, "id", getattr(base, "attr", "")) for base in node.bases}
                if bases & {"Exception", "RuntimeError", "ValueError", "AgentPayError"} or node.name.endswith("Error"):
                    elsewhere.append(f"{path.relative_to(REPO)}:{node.name}")
    assert elsewhere == []
