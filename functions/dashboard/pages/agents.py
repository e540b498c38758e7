"""The dashboard's agent pages: the list with today's spend, new agents, limits, disable, enable, unblock and keys."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from functions.dashboard.pages.common import (
    FormDep,
    PageRoute,
    SignedIn,
    SignedInDep,
    notice_of,
    render,
    see_other,
)
from shared.accounts import agents
from shared.config import get_settings
from shared.errors import ValidationFailed
from shared.http.app import request_id_of
from shared.platform import db
from shared.policy.limits import DEFAULT_MAX_REQUESTS_PER_MINUTE, Limits

router = APIRouter(route_class=PageRoute)


def dollars_input(cents: int) -> str:
    whole, part = divmod(int(cents), 100)
    return f"{whole}.{part:02d}"


def _cents(value: str, field: str) -> int:
    """Dollars typed by an admin ("50", "1,250.50") as cents."""
    try:
        amount = Decimal(value.replace(",", "").replace("$", "").strip())
    except InvalidOperation as exc:
        raise ValidationFailed([{"field": field, "message": "must be an amount in dollars, like 50.00"}]) from exc
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        raise ValidationFailed([{"field": field, "message": "must be an amount in dollars with at most 2 decimals"}])
    return int(amount * 100)


def _limits_from(form: dict[str, str]) -> tuple[Limits | None, dict[str, str]]:
    """The limits of a form, checked by the same rules as the API; the API's messages per field otherwise."""
    errors: dict[str, str] = {}
    cents: dict[str, int] = {}
    for field in ("daily_limit", "per_transaction_limit", "approval_threshold"):
        try:
            cents[field] = _cents(form.get(field, ""), field)
        except ValidationFailed as exc:
            errors[field] = exc.errors[0]["message"]
    rate_text = form.get("max_requests_per_minute", "").strip() or str(DEFAULT_MAX_REQUESTS_PER_MINUTE)
    rate = int(rate_text) if rate_text.isdigit() else 0
    if errors:
        return None, errors
    try:
        limits = Limits(
            daily_limit_cents=cents["daily_limit"],
            per_tx_limit_cents=cents["per_transaction_limit"],
            approval_threshold_cents=cents["approval_threshold"],
            max_requests_per_minute=rate,
        ).validate()
    except ValidationFailed as exc:
        for error in exc.errors:
            errors.setdefault(error["field"], f"{error['field']}: {error['message']}")
        return None, errors
    return limits, {}


def _agents_page(who: SignedIn, *, status_code: int = 200, notice: str | None = None, **context: Any) -> HTMLResponse:
    with db.connection() as conn:
        views = agents.list_agent_views(conn, organization_id=who.organization_id, timezone=who.timezone)
    for view in views:
        daily = view["limits"]["daily_limit"]
        view["spend_percent"] = min(100, round(100 * view["spend_today"] / daily)) if daily else 0
    context.setdefault("values", {})
    context.setdefault("errors", {})
    return render("agents.html", status_code, signed_in=who, active="agents", agents=views, notice=notice, **context)


@router.get("/agents")
def agents_page(request: Request, who: SignedInDep) -> HTMLResponse:
    return _agents_page(who, notice=notice_of(request))


@router.post("/agents")
def create_agent(who: SignedInDep, form: FormDep) -> HTMLResponse:
    name = form.get("name", "").strip()
    limits, errors = _limits_from(form)
    if not 1 <= len(name) <= 200:
        errors["name"] = "Give the agent a name (up to 200 characters)."
    if limits is None or errors:
        return _agents_page(who, status_code=422, values=form, errors=errors)
    with db.connection() as conn:
        created = agents.create_agent(
            conn,
            organization_id=who.organization_id,
            name=name,
            limits=limits,
            key_mode=get_settings().key_mode,
        )
    return render(
        "agent_key.html",
        signed_in=who,
        active="agents",
        agent=created.agent,
        api_key=created.api_key.plaintext,
        title="Agent created",
    )


@router.get("/agents/{agent_id}")
def agent_page(agent_id: str, request: Request, who: SignedInDep) -> HTMLResponse:
    with db.connection() as conn:
        view = agents.get_agent_view(
            conn, organization_id=who.organization_id, agent_id=agents.parse_id(agent_id), timezone=who.timezone
        )
    values = {k: dollars_input(v) for k, v in view["limits"].items() if k != "max_requests_per_minute"}
    values["max_requests_per_minute"] = str(view["limits"]["max_requests_per_minute"])
    return render("agent.html", signed_in=who, active="agents", agent=view, values=values, errors={})


@router.post("/agents/{agent_id}/limits")
def update_limits(agent_id: str, request: Request, who: SignedInDep, form: FormDep) -> Response:
    target = agents.parse_id(agent_id)
    limits, errors = _limits_from(form)
    with db.connection() as conn:
        if limits is None:
            view = agents.get_agent_view(
                conn, organization_id=who.organization_id, agent_id=target, timezone=who.timezone
            )
            return render("agent.html", 422, signed_in=who, active="agents", agent=view, values=form, errors=errors)
        agents.change_limits(
            conn,
            organization_id=who.organization_id,
            agent_id=target,
            limits=limits,
            timezone=who.timezone,
            request_id=request_id_of(request),
        )
    return see_other("/dashboard/agents", notice="limits_updated")


def _agent_action(action: str) -> Callable[..., Response]:
    def act(agent_id: str, request: Request, who: SignedInDep, form: FormDep) -> Response:
        change = {"disable": agents.disable_agent, "enable": agents.enable_agent, "unblock": agents.lift_block}[action]
        with db.connection() as conn:
            change(
                conn,
                organization_id=who.organization_id,
                agent_id=agents.parse_id(agent_id),
                timezone=who.timezone,
                request_id=request_id_of(request),
            )
        notice = {"disable": "agent_disabled", "enable": "agent_enabled", "unblock": "agent_unblocked"}[action]
        return see_other("/dashboard/agents", notice=notice)

    return act


for _action in ("disable", "enable", "unblock"):
    router.add_api_route(f"/agents/{{agent_id}}/{_action}", _agent_action(_action), methods=["POST"])


@router.post("/agents/{agent_id}/rotate-key")
def rotate_key(agent_id: str, request: Request, who: SignedInDep, form: FormDep) -> HTMLResponse:
    with db.connection() as conn:
        rotated = agents.rotate_key(
            conn,
            organization_id=who.organization_id,
            agent_id=agents.parse_id(agent_id),
            key_mode=get_settings().key_mode,
            request_id=request_id_of(request),
        )
    return render(
        "agent_key.html",
        signed_in=who,
        active="agents",
        agent=rotated.agent,
        api_key=rotated.api_key.plaintext,
        title="New key issued",
    )
