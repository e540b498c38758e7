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


def _row(status: str, reason: str, *, went_to_people: bool, shadow: dict[str, str] | None) -> dict[str, object]:
    return {
        "status": status,
        "decision_reason": reason,
        "approval_expires_at": "2026-11-03T10:00:00+00:00" if went_to_people else None,
        "shadow": shadow,
    }


def _verdict(status: str, reason: str) -> dict[str, str]:
    return {"status": status, "decision_reason": reason}


def test_a_drafts_verdict_is_noted_only_where_it_differs_from_the_first_decision() -> None:
    # The note stands beside what the request was answered with, not what people or the charge did with it later.
    from functions.dashboard.pages.transactions import shadow_differs

    pending = _verdict("pending", "approval_required")
    approved = _verdict("approved", "auto_approved")
    same = [
        _row("completed", "auto_approved", went_to_people=False, shadow=approved),
        _row("declined", "charge_failed", went_to_people=False, shadow=approved),
        _row("completed", "approved_by_admin", went_to_people=True, shadow=pending),
        _row("timed_out", "approval_timed_out", went_to_people=True, shadow=pending),
        _row(
            "declined",
            "weekly_limit_exceeded",
            went_to_people=False,
            shadow=_verdict("declined", "weekly_limit_exceeded"),
        ),
        _row("approved", "auto_approved", went_to_people=False, shadow=None),
    ]
    differs = [
        _row("completed", "auto_approved", went_to_people=False, shadow=_verdict("declined", "merchant_blocked")),
        _row("completed", "approved_by_admin", went_to_people=True, shadow=approved),
        _row(
            "pending",
            "approval_required",
            went_to_people=True,
            shadow=_verdict("pending", "new_merchant_requires_approval"),
        ),
        _row(
            "declined",
            "daily_limit_exceeded",
            went_to_people=False,
            shadow=_verdict("declined", "weekly_limit_exceeded"),
        ),
        _row("declined", "monthly_limit_exceeded", went_to_people=False, shadow=approved),
    ]
    assert [shadow_differs(row) for row in same] == [False] * len(same)
    assert [shadow_differs(row) for row in differs] == [True] * len(differs)
