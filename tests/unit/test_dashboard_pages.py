"""The web dashboard's modules (functions/dashboard/pages): each one's routes are PageRoutes, none loads Stripe or
Jinja when imported."""

from __future__ import annotations

import ast
import importlib
import pkgutil

from tests.conftest import REPO

PAGES = REPO / "functions" / "dashboard" / "pages"


def test_every_route_of_every_pages_module_is_a_page_route() -> None:
    # Each module has its own router: one made without route_class=PageRoute would answer failures as JSON, without
    # the security headers, and take forms posted from any origin.
    from functions.dashboard import pages
    from functions.dashboard.pages.common import PageRoute

    modules = [info.name for info in pkgutil.iter_modules(pages.__path__)]
    assert {"common", "account", "transactions", "agents", "audit", "billing"} <= set(modules)
    for name in modules:
        routes = importlib.import_module(f"{pages.__name__}.{name}").router.routes
        assert routes, name
        assert [r.path for r in routes if not isinstance(r, PageRoute)] == [], name


def test_no_pages_module_imports_stripe_or_jinja_when_loaded() -> None:
    # Cold start: rendering goes through shared.rendering, which loads Jinja on first use; Stripe's types are only
    # annotations (under TYPE_CHECKING).
    offenders = {}
    for path in sorted(PAGES.glob("*.py")):
        names = set()
        for node in ast.parse(path.read_text(), filename=str(path)).body:  # module level only
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found = sorted(name for name in names if name.split(".")[0] in ("stripe", "jinja2"))
        if found:
            offenders[path.name] = found
    assert offenders == {}
