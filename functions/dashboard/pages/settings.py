"""The dashboard's settings page: the organization's ceiling over all its agents together, and its spend."""

from fastapi import Request, Response
from fastapi.responses import HTMLResponse

from functions.dashboard.pages.common import (
    FormDep,
    SignedIn,
    SignedInDep,
    cents_from_dollars,
    dollars_input,
    notice_of,
    page_router,
    render,
    see_other,
)
from functions.dashboard.pages.policies import sentence, window_rows
from shared.errors import ValidationFailed
from shared.http.app import request_id_of
from shared.platform import db
from shared.platform.clock import clock
from shared.policy import admin as policy_admin
from shared.policy import spend
from shared.policy.model import Ceiling, ceiling_from_wire

router = page_router()

CEILING_FIELDS = ("daily_limit", "monthly_limit")


def ceiling_from_form(form: dict[str, str]) -> tuple[Ceiling | None, dict[str, str]]:
    """The ceiling a form describes (dollars, empty for none), checked by the API's rules; or what to fix, by field."""
    errors: dict[str, str] = {}
    limits: dict[str, int | None] = {}
    for name in CEILING_FIELDS:
        text = form.get(name, "").strip()
        try:
            limits[name] = cents_from_dollars(text, name) if text else None
        except ValidationFailed as exc:
            errors[name] = sentence(exc.errors[0]["message"])
    if errors:
        return None, errors
    try:
        return ceiling_from_wire({"limits": limits}), {}
    except ValidationFailed as exc:
        for error in exc.errors:
            name = error["field"].removeprefix("policy.limits.")
            errors[name if name in CEILING_FIELDS else "form"] = sentence(error["message"])
        return None, errors


def _settings_page(
    who: SignedIn,
    *,
    status_code: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    with db.connection() as conn:
        ceiling = policy_admin.get_ceiling(conn, organization_id=who.organization_id)
    windows = spend.organization_windows(
        organization_id=who.organization_id, ceiling=ceiling, timezone=who.timezone, now=clock.now()
    )
    if values is None:
        values = {
            "daily_limit": dollars_input(ceiling.daily_limit_cents),
            "monthly_limit": dollars_input(ceiling.monthly_limit_cents),
        }
    return render(
        "settings.html",
        status_code,
        signed_in=who,
        active="settings",
        windows=window_rows(windows),
        values=values,
        errors=errors or {},
        notice=notice,
    )


@router.get("/settings")
def settings_page(request: Request, who: SignedInDep) -> HTMLResponse:
    return _settings_page(who, notice=notice_of(request))


@router.post("/settings/ceiling")
def save_ceiling(request: Request, who: SignedInDep, form: FormDep) -> Response:
    ceiling, errors = ceiling_from_form(form)
    if ceiling is None:
        return _settings_page(who, status_code=422, values=form, errors=errors)
    with db.connection() as conn:
        policy_admin.replace_ceiling(
            conn,
            organization_id=who.organization_id,
            ceiling=ceiling,
            actor="admin",
            request_id=request_id_of(request),
        )
    return see_other("/dashboard/settings", notice="ceiling_saved")
