"""The dashboard's agents: the list with today's spend, new agents, the first limits form, disable, enable, unblock
and keys (each agent's own page, with its policy, is pages/policies.py)."""

from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse

from functions.dashboard.pages.common import (
    FormDep,
    SignedIn,
    SignedInDep,
    cents_from_dollars,
    notice_of,
    page_router,
    render,
    see_other,
)
from functions.dashboard.pages.policies import PolicyForm, agent_page
from shared.accounts import agents
from shared.config import get_settings
from shared.errors import ValidationFailed
from shared.http.app import request_id_of
from shared.platform import db
from shared.policy.model import DEFAULT_MAX_REQUESTS_PER_MINUTE, Limits, check_basic_limits

router = page_router()


_BASIC_FIELDS = ("daily_limit", "per_transaction_limit", "approval_threshold", "max_requests_per_minute")


def _limits_from(form: dict[str, str]) -> tuple[Limits | None, dict[str, str]]:
    """The limits of a form, checked by the same rules as the API; the API's messages per field otherwise."""
    errors: dict[str, str] = {}
    cents: dict[str, int] = {}
    for field in ("daily_limit", "per_transaction_limit", "approval_threshold"):
        try:
            cents[field] = cents_from_dollars(form.get(field, ""), field)
        except ValidationFailed as exc:
            errors[field] = exc.errors[0]["message"]
    rate_text = form.get("max_requests_per_minute", "").strip() or str(DEFAULT_MAX_REQUESTS_PER_MINUTE)
    rate = int(rate_text) if rate_text.isdigit() else 0
    if errors:
        return None, errors
    limits = Limits(
        daily_limit_cents=cents["daily_limit"],
        per_tx_limit_cents=cents["per_transaction_limit"],
        approval_threshold_cents=cents["approval_threshold"],
        max_requests_per_minute=rate,
    )
    try:
        check_basic_limits(limits)
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


@router.post("/agents/{agent_id}/limits")
def update_limits(agent_id: str, request: Request, who: SignedInDep, form: FormDep) -> Response:
    """The first form's four limits (the policy's editor replaced it on the agent page; the route stays for anyone
    who posts to it): the rest of the policy stays as it is."""
    target = agents.parse_id(agent_id)
    limits, errors = _limits_from(form)
    if limits is None:
        sent = {name: form.get(name, "") for name in _BASIC_FIELDS}
        return agent_page(who, target, status_code=422, editor=PolicyForm(sent, errors, partial=True))
    with db.connection() as conn:
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
