"""The deploy files: template.yaml lints clean, routes what API.md promises, and ships what the code imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy import package

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"

# Functions the template deploys whose code is still being written. Empty this set as each one lands: from then
# on a missing functions/<name>/app.py fails the suite.

# Every public (method, path) of API.md, with a sample value in each path parameter. /v1/jobs/* are not public:
# QStash reaches the workers on their function URLs.
API_MD_ROUTES = [
    ("POST", "/v1/payment-request", "payment_request"),
    ("GET", "/v1/transactions/0b9c7f5e-1f49-4d51-9d0c-6a1f2b8f1c11", "transactions"),
    ("GET", "/v1/approve/eyJhbGciOiJIUzI1NiJ9.e30.sig", "approve"),
    ("POST", "/v1/approve/eyJhbGciOiJIUzI1NiJ9.e30.sig", "approve"),
    ("GET", "/v1/decline/eyJhbGciOiJIUzI1NiJ9.e30.sig", "decline"),
    ("POST", "/v1/decline/eyJhbGciOiJIUzI1NiJ9.e30.sig", "decline"),
    ("POST", "/v1/orgs", "dashboard"),
    ("GET", "/v1/dashboard/transactions", "dashboard"),
    ("GET", "/v1/dashboard/agents", "dashboard"),
    ("POST", "/v1/dashboard/agents", "dashboard"),
    ("PUT", "/v1/dashboard/agents/7d1e/limits", "dashboard"),
    ("POST", "/v1/dashboard/agents/7d1e/unblock", "dashboard"),
    ("POST", "/v1/dashboard/agents/7d1e/disable", "dashboard"),
    ("POST", "/v1/dashboard/agents/7d1e/enable", "dashboard"),
    ("POST", "/v1/dashboard/agents/7d1e/rotate-key", "dashboard"),
    ("POST", "/v1/dashboard/transactions/7d1e/approve", "dashboard"),
    ("POST", "/v1/dashboard/transactions/7d1e/decline", "dashboard"),
    ("GET", "/v1/dashboard/audit-logs", "dashboard"),
    ("GET", "/dashboard", "dashboard"),
    ("GET", "/dashboard/agents", "dashboard"),
    ("GET", "/healthz", "dashboard"),
]

# The variables every function must receive, named as shared/config.py reads them.
SETTINGS_VARIABLES = {
    "AGENTPAY_ENV",
    "AGENTPAY_SECRETS_ARN",
    "DATABASE_URL",
    "UPSTASH_REDIS_REST_URL",
    "UPSTASH_REDIS_REST_TOKEN",
    "QSTASH_TOKEN",
    "QSTASH_CURRENT_SIGNING_KEY",
    "QSTASH_NEXT_SIGNING_KEY",
    "STRIPE_SECRET_KEY",
    "RESEND_API_KEY",
    "SENTRY_DSN",
    "APPROVAL_JWT_SECRET",
    "SESSION_SECRET",
    "SIGNUP_TOKEN",
    "PUBLIC_BASE_URL",
    "EMAIL_FROM",
}


def _template() -> dict[str, Any]:
    template, problems = decode(str(TEMPLATE))
    assert not problems, [str(p) for p in problems]
    assert template is not None
    return template


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Function name (the folder under functions/) -> its resource's properties."""
    found = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            handler = resource["Properties"]["Handler"]
            match = re.fullmatch(r"functions/(\w+)/app\.handler", handler)
            assert match, f"handler {handler!r} is not functions/<name>/app.handler"
            found[match.group(1)] = resource["Properties"]
    return found


def _http_routes(template: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(method, path pattern, function name) of every HttpApi event."""
    routes = []
    for name, props in _functions(template).items():
        for event in props.get("Events", {}).values():
            if event["Type"] == "HttpApi":
                routes.append((event["Properties"]["Method"].upper(), event["Properties"]["Path"], name))
    return routes


def _matches(pattern: str, path: str) -> bool:
    """API Gateway's matching: {name} is one segment, a trailing {name+} one or more."""
    regex = ""
    for part in re.split(r"(\{[^}]+\})", pattern):
        if part.startswith("{") and part.endswith("+}"):
            regex += ".+"
        elif part.startswith("{"):
            regex += "[^/]+"
        else:
            regex += re.escape(part)
    return re.fullmatch(regex, path) is not None


def _route_for(routes: list[tuple[str, str, str]], method: str, path: str) -> str | None:
    """The function API Gateway would call: an exact route wins over a greedy one, a method over ANY."""
    candidates = [r for r in routes if r[0] in (method, "ANY") and _matches(r[1], path)]
    if not candidates:
        return None
    candidates.sort(key=lambda r: ("+}" in r[1], -len(r[1]), r[0] == "ANY"))
    return candidates[0][2]


def test_cfn_lint_reports_nothing() -> None:
    matches = lint_file(TEMPLATE, config=ManualArgs())
    assert [str(m) for m in matches] == []


def test_every_handler_module_exists() -> None:
    functions = _functions(_template())
    missing = sorted(name for name in functions if not (REPO / "functions" / name / "app.py").is_file())
    assert missing == [], f"template.yaml deploys functions without functions/<name>/app.py: {missing}"


@pytest.mark.parametrize(("method", "path", "function"), API_MD_ROUTES)
def test_api_md_path_is_routed_to_its_function(method: str, path: str, function: str) -> None:
    assert _route_for(_http_routes(_template()), method, path) == function


def _declared_routes(app_py: Path) -> list[tuple[str, str]]:
    """(METHOD, path) of each @router.<method>("/path") in a function module, read without importing it."""
    found = []
    for node in ast.walk(ast.parse(app_py.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr in {"get", "post", "put", "patch", "delete"}
                and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
            ):
                found.append((decorator.func.attr.upper(), str(decorator.args[0].value)))
    return found


def test_every_route_a_built_function_declares_reaches_it() -> None:
    template = _template()
    routes = _http_routes(template)
    unrouted = []
    for name in _functions(template):
        app_py = REPO / "functions" / name / "app.py"
        if not app_py.is_file():
            continue
        for method, path in _declared_routes(app_py):
            if path.startswith("/v1/jobs/"):
                continue  # QStash calls the workers on their function URLs
            sample = re.sub(r"\{[^}]+\}", "x1", path)
            if _route_for(routes, method, sample) != name:
                unrouted.append(f"{method} {path} ({name})")
    assert unrouted == []


def test_every_function_deploys_the_staged_artifact() -> None:
    """`make package` stages build/lambda; a function given the repository (or anything else) would ship devtools/,
    tests/ and a local .agentpay/, and none of the dependencies."""
    template = _template()
    assert template["Globals"]["Function"]["CodeUri"] == str(package.ARTIFACT.relative_to(REPO)) == "build/lambda"
    overriding = sorted(name for name, props in _functions(template).items() if "CodeUri" in props)
    assert overriding == []


def test_the_artifact_is_built_for_the_architecture_the_template_deploys() -> None:
    template = _template()
    assert template["Globals"]["Function"]["Architectures"] == [package.DEPLOYED_PLATFORM]
    assert package.DEPLOYED_PLATFORM in package.WHEEL_PLATFORMS
    assert template["Globals"]["Function"]["Runtime"] == f"python{package.PYTHON_VERSION}"
    overriding = sorted(
        name for name, props in _functions(template).items() if {"Architectures", "Runtime"} & set(props)
    )
    assert overriding == []


def test_the_staged_artifact_is_not_committed() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", "build/lambda/shared/config.py"], cwd=REPO, check=False)
    assert ignored.returncode == 0, "build/ must be in .gitignore"


def _string_constants(path: Path) -> set[str]:
    """String constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def test_the_artifact_ships_only_what_the_functions_run() -> None:
    """functions/ and shared/ only: migrations are applied by `agentpay migrate` (devtools/), and no deployed module
    reads them. A module that starts to would find them missing in Lambda: add migrations to deploy.package.SOURCES."""
    assert set(package.SOURCES) == {"functions", "shared"}
    deployed = [*(REPO / "shared").rglob("*.py"), *(REPO / "functions").rglob("*.py")]
    readers = sorted(
        str(path.relative_to(REPO))
        for path in deployed
        if any("migrations" in text for text in _string_constants(path))
    )
    assert readers == []


def test_workers_have_open_function_urls_and_no_public_route() -> None:
    functions = _functions(_template())
    for name in ("charge_worker", "email_worker"):
        assert functions[name]["FunctionUrlConfig"]["AuthType"] == "NONE"
        assert not functions[name].get("Events")


def test_expire_approvals_runs_every_five_minutes() -> None:
    events = _functions(_template())["expire_approvals"]["Events"].values()
    assert [(e["Type"], e["Properties"]["Schedule"]) for e in events] == [("Schedule", "rate(5 minutes)")]


def test_every_function_gets_every_setting() -> None:
    template = _template()
    shared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    assert shared >= SETTINGS_VARIABLES, sorted(SETTINGS_VARIABLES - shared)
    for name, props in _functions(template).items():
        own = set(props.get("Environment", {}).get("Variables", {}))
        assert not own & SETTINGS_VARIABLES, f"{name} overrides a shared setting"


def _references(node: Any) -> set[str]:
    """Logical ids a template fragment refers to (Ref, GetAtt, ${...} in Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                found |= _references(value[1] if isinstance(value, list) else None)
            else:
                found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


def test_no_dependency_cycle_after_the_sam_transform() -> None:
    """cfn-lint checks the SAM template as written; these cycles only appear in what SAM generates from it.

    SAM turns FunctionUrlConfig into `<Function>Url`, which depends on the function, and writes the ARN of every
    function with an HttpApi event into that API's definition. So a function given its own URL, two workers
    given each other's, or any routed function given the API's id, cannot be created.
    """
    template = _template()
    resources = template["Resources"]
    graph = nx.DiGraph()
    for logical_id, resource in resources.items():
        graph.add_node(logical_id)
        # SAM moves a function's events into resources of their own (permissions, rules): not its dependencies.
        own = {k: v for k, v in resource.get("Properties", {}).items() if k != "Events"}
        for target in _references(own):
            graph.add_edge(logical_id, target)
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        if "FunctionUrlConfig" in resource["Properties"]:
            graph.add_edge(f"{logical_id}Url", logical_id)
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                api = _references(event["Properties"].get("ApiId", {})) or {"ServerlessHttpApi"}
                graph.add_edge(api.pop(), logical_id)
    globals_refs = _references(template.get("Globals", {}))
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Function":
            for target in globals_refs:
                graph.add_edge(logical_id, target)
    graph.remove_nodes_from([n for n in list(graph) if n not in resources and not n.endswith("Url")])
    assert list(nx.simple_cycles(graph)) == []


def _pyproject_dependencies() -> list[Requirement]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return [Requirement(line) for line in tomllib.load(f)["project"]["dependencies"]]


def _requirements_txt() -> list[Requirement]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in (raw.split("#", 1)[0].strip() for raw in lines) if line]


def _key(req: Requirement) -> tuple[str, frozenset[str], str, str]:
    return (canonicalize_name(req.name), frozenset(req.extras), str(req.specifier), str(req.marker or ""))


def test_requirements_txt_is_pyprojects_runtime_dependencies() -> None:
    """`make package` installs requirements.txt, not pyproject.toml: the two must list the same packages."""
    assert sorted(map(_key, _requirements_txt())) == sorted(map(_key, _pyproject_dependencies()))


def _runtime_distributions() -> set[str]:
    """The installed distributions the runtime dependencies pull in, transitively, extras included."""
    seen: set[str] = set()
    todo = [(req, frozenset(req.extras)) for req in _pyproject_dependencies()]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in environments):
                todo.append((sub, frozenset(sub.extras)))
    return seen


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it, over everything a function's app.py reaches."""
    found: dict[str, set[str]] = {}
    seen: set[Path] = set()
    todo = sorted(REPO.glob("functions/*/app.py"))
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        source = path.read_text()
        names: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        if re.search(r"\bEmailStr\b", source):
            names.add("email_validator")  # pydantic imports it only when an EmailStr field is built
        for name in names:
            top = name.split(".")[0]
            if top in ("shared", "functions"):
                module = REPO / (name.replace(".", "/") + ".py")
                package = REPO / name.replace(".", "/") / "__init__.py"
                todo += [p for p in (module, package) if p.is_file()]
            elif top not in sys.stdlib_module_names:
                found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_module_the_functions_import_is_a_runtime_dependency() -> None:
    """A package only the dev extras install would be missing from the Lambda build: ImportError on cold start."""
    runtime = _runtime_distributions()
    providers = importlib.metadata.packages_distributions()
    missing = {
        module: sorted(files)
        for module, files in _third_party_imports().items()
        if not {canonicalize_name(d) for d in providers.get(module, [module])} & runtime
    }
    assert missing == {}, f"add these to [project].dependencies and requirements.txt: {missing}"
