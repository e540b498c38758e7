"""The dashboard's agent page: each window's spend against its limit, the editor of the whole policy, and the "Try a
draft" panel (the last 30 days replayed against a draft, or a draft recorded beside the real decisions)."""

import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

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
from shared.accounts import agents, dashboard
from shared.errors import ValidationFailed
from shared.http.app import request_id_of
from shared.platform import db
from shared.platform.clock import clock
from shared.policy import admin as policy_admin
from shared.policy import simulate as simulation
from shared.policy import spend
from shared.policy.evaluate import Window
from shared.policy.model import Policy, policy_from_wire, policy_wire
from shared.rendering import format_day, format_money, local_time

router = page_router()

SIMULATED_DAYS = 30

# The form's fields. Limits carry their wire names, so the API's error paths (policy.limits.weekly_limit) name them.
MONEY_LIMITS = ("per_transaction_limit", "daily_limit", "weekly_limit", "monthly_limit", "approval_threshold")
COUNT_LIMITS = ("max_payments_per_day", "max_requests_per_minute")
MERCHANT_FIELDS = {"allow": "merchant_allow", "block": "merchant_block", "limits": "merchant_caps"}
# How a message names another field: "must be at least per_transaction_limit" -> "... the per-payment limit".
_PHRASES = {
    "per_transaction_limit": "the per-payment limit",
    "daily_limit": "the daily limit",
    "weekly_limit": "the weekly limit",
    "monthly_limit": "the monthly limit",
    "approval_threshold": "the approve-above amount",
}
# An item of a list, or a field of one (a cap's host is checked as a list of one: limits[2].merchant[0]).
_ITEM_PATH = re.compile(r"policy\.merchants\.(allow|block|limits)\[(\d+)\](?:\..*)?")
# "api.openai.com 50.00", "api.openai.com: $50": a host, then its daily amount.
_CAP_LINE = re.compile(r"(\S+?):?\s+(\S.*)")


@dataclass(frozen=True)
class PolicyForm:
    """A policy form as the admin sees it: each field's text and what is wrong with it, by field name. `partial`
    values (the first API's limits form) show over the current policy's."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    partial: bool = False


def form_values(policy: Policy) -> dict[str, str]:
    """The text of each field for a policy: dollars, counts, one merchant pattern or cap per line."""
    wire = policy_wire(policy)
    limits = wire["limits"]
    values = {name: dollars_input(limits[name]) for name in MONEY_LIMITS}
    values |= {name: "" if limits[name] is None else str(limits[name]) for name in COUNT_LIMITS}
    values["merchant_allow"] = "\n".join(wire["merchants"]["allow"])
    values["merchant_block"] = "\n".join(wire["merchants"]["block"])
    values["merchant_caps"] = "\n".join(
        f"{cap['merchant']} {dollars_input(cap['daily_limit'])}" for cap in wire["merchants"]["limits"]
    )
    values["approval_new_merchant"] = "on" if wire["approval"]["new_merchant"] else ""
    values["dual_approval_above"] = dollars_input(wire["approval"]["dual_approval_above"])
    return values


class _Problems:
    """Messages by field; a field with several (two bad lines) shows them all."""

    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.by_field.setdefault(name, []).append(message)

    def joined(self) -> dict[str, str]:
        return {name: " ".join(messages) for name, messages in self.by_field.items()}


def sentence(message: str, *, line: int | None = None) -> str:
    """An API message as a sentence for people, other fields by their names on the page; about one line of a list,
    "Line 3: ..." (whose message may begin with a host name, never capitalised)."""
    for wire_name, phrase in _PHRASES.items():
        message = message.replace(wire_name, phrase)
    message = message.rstrip(".") + "."
    return f"Line {line}: {message}" if line is not None else message[:1].upper() + message[1:]


def _lines(text: str) -> list[tuple[int, str]]:
    """The non-blank lines of a textarea with their line numbers (from 1), for messages that point at one."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _money(form: dict[str, str], name: str, problems: _Problems) -> int | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return cents_from_dollars(text, name)
    except ValidationFailed as exc:
        problems.add(name, sentence(exc.errors[0]["message"]))
        return None


def _count(form: dict[str, str], name: str, problems: _Problems) -> int | None:
    text = form.get(name, "").replace(",", "").strip()
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,12}", text):
        problems.add(name, "Must be a whole number, like 20.")
        return None
    return int(text)


def _patterns(text: str) -> list[tuple[int, str]]:
    """One pattern per line; commas or spaces between several on a line are forgiven."""
    return [(number, item) for number, line in _lines(text) for item in re.split(r"[\s,]+", line) if item]


def _caps(text: str, problems: _Problems) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The per-merchant daily caps, one "host amount" per line; and the line each came from."""
    caps: list[dict[str, Any]] = []
    lines: list[tuple[int, str]] = []
    for number, line in _lines(text):
        match = _CAP_LINE.fullmatch(line)
        if match is None:
            example = "api.openai.com 50.00"
            problems.add(
                "merchant_caps", f"Line {number}: write the merchant, a space and its daily amount, like {example}."
            )
            continue
        host, amount = match.groups()
        try:
            cents = cents_from_dollars(amount, "merchant_caps")
        except ValidationFailed as exc:
            problems.add("merchant_caps", sentence(f"the daily amount {exc.errors[0]['message']}", line=number))
            continue
        caps.append({"merchant": host, "daily_limit": cents})
        lines.append((number, host))
    return caps, lines


def policy_from_form(form: dict[str, str]) -> tuple[Policy | None, dict[str, str]]:
    """The policy a form describes, checked by the API's own rules (policy_from_wire); or, by field, what to fix."""
    problems = _Problems()
    limits: dict[str, int | None] = {name: _money(form, name, problems) for name in MONEY_LIMITS}
    limits |= {name: _count(form, name, problems) for name in COUNT_LIMITS}
    allow, block = _patterns(form.get("merchant_allow", "")), _patterns(form.get("merchant_block", ""))
    caps, cap_lines = _caps(form.get("merchant_caps", ""), problems)
    dual = _money(form, "dual_approval_above", problems)
    if problems.by_field:
        return None, problems.joined()
    document = {
        "limits": limits,
        "merchants": {"allow": [p for _, p in allow], "block": [p for _, p in block], "limits": caps},
        "approval": {"new_merchant": bool(form.get("approval_new_merchant")), "dual_approval_above": dual},
    }
    try:
        return policy_from_wire(document), {}
    except ValidationFailed as exc:
        lines = {"allow": allow, "block": block, "limits": cap_lines}
        for error in exc.errors:
            problems.add(*_place(error["field"], error["message"], lines))
        return None, problems.joined()


def _place(path: str, message: str, lines: dict[str, list[tuple[int, str]]]) -> tuple[str, str]:
    """The form field an API error path names, and its message as the page shows it."""
    if path == "policy.limits":
        return "limits", "Set at least one of the per-payment, daily, weekly or monthly limits."
    if path.startswith("policy.limits."):
        return path.removeprefix("policy.limits."), sentence(message)
    item = _ITEM_PATH.fullmatch(path)
    if item is not None:
        kind, index = item.group(1), int(item.group(2))
        number = lines[kind][index][0] if index < len(lines[kind]) else index + 1
        return MERCHANT_FIELDS[kind], sentence(message, line=number)
    if path.startswith("policy.merchants."):
        return MERCHANT_FIELDS.get(path.removeprefix("policy.merchants."), "form"), sentence(message)
    if path == "policy.approval.dual_approval_above":
        return "dual_approval_above", sentence(message)
    return "form", sentence(message)


# The windows as bars ----------------------------------------------------------------------------------------------
# Each window's label, what its limit is called, and what it shows without one.
_WINDOW_NAMES = {
    Window.DAY: ("Today", "daily limit", "no daily limit"),
    Window.WEEK: ("This week", "weekly limit", "no weekly limit"),
    Window.MONTH: ("This month", "monthly limit", "no monthly limit"),
    Window.PAYMENTS_DAY: ("Payments today", "limit on payments a day", "no limit on payments a day"),
    Window.ORGANIZATION_DAY: ("Organization today", "organization's daily limit", "no daily limit for all agents"),
    Window.ORGANIZATION_MONTH: (
        "Organization this month",
        "organization's monthly limit",
        "no monthly limit for all agents",
    ),
}


def window_rows(windows: list[spend.WindowSpend]) -> list[dict[str, Any]]:
    """Each window as its bar shows it: "$X of $Y", its days, how full; without a limit, the spend and no bar."""
    rows = []
    for window in windows:
        label, limit_name, unlimited = _WINDOW_NAMES[window.window]
        if window.counts_payments:
            spent = f"{window.spent} payment" + ("" if window.spent == 1 else "s")
            of_limit = f"{window.spent} of {window.limit} payments"
        else:
            spent = format_money(window.spent)
            of_limit = f"{spent} of {format_money(window.limit or 0)}"
        used = f"{spent}, {unlimited}" if window.limit is None else of_limit
        first, last = window.first_day, window.last_day
        rows.append(
            {
                "window": window.window.value,
                "label": label,
                "days": format_day(first) if first == last else f"{format_day(first)} – {format_day(last)}",
                "used": used,
                "limited": window.limit is not None,
                "percent": window.percent,
                "description": f"{window.percent}% of the {limit_name} used",
            }
        )
    return rows


# The page ---------------------------------------------------------------------------------------------------------
def agent_page(
    who: SignedIn,
    agent_id: uuid.UUID,
    *,
    status_code: int = 200,
    editor: PolicyForm | None = None,
    draft: PolicyForm | None = None,
    result: dict[str, Any] | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    """The agent page; a form sent back with its errors, or a simulation's result, shows in place."""
    with db.connection() as conn:
        agent = agents.agent_view(agents.get_agent(conn, organization_id=who.organization_id, agent_id=agent_id))
        policy = policy_admin.get_policy(conn, organization_id=who.organization_id, agent_id=agent_id)
        shadow = policy_admin.get_shadow(conn, organization_id=who.organization_id, agent_id=agent_id)
        ceiling = policy_admin.get_ceiling(conn, organization_id=who.organization_id)
        changes = _changes(conn, who, result) if result is not None else []
    windows = spend.agent_windows(
        organization_id=who.organization_id,
        agent_id=agent_id,
        policy=policy,
        ceiling=ceiling,
        timezone=who.timezone,
        now=clock.now(),
    )
    current = form_values(policy)
    if editor is None:
        editor = PolicyForm(current)
    elif editor.partial:
        editor = PolicyForm({**current, **editor.values}, editor.errors)
    if draft is None:
        # The draft starts from the one recording, if any: that is the one being tried.
        draft = PolicyForm(form_values(policy_from_wire(shadow, path="shadow")) if shadow is not None else current)
    return render(
        "agent.html",
        status_code,
        signed_in=who,
        active="agents",
        agent=agent,
        windows=window_rows(windows),
        editor=editor,
        draft=draft,
        shadow_set=shadow is not None,
        simulation=result,
        changes=changes,
        simulated_days=SIMULATED_DAYS,
        notice=notice,
    )


def _changes(conn: db.Connection, who: SignedIn, result: dict[str, Any]) -> list[dict[str, Any]]:
    """A simulation's changes with what a person recognises a payment by: when, how much, to whom."""
    ids = [uuid.UUID(change["transaction_id"]) for change in result["changes"]]
    rows = dashboard.get_transactions(conn, organization_id=who.organization_id, transaction_ids=ids)
    shown = []
    for transaction_id, change in zip(ids, result["changes"], strict=True):
        row = rows.get(transaction_id)
        if row is None:
            continue
        shown.append(
            {
                **change,
                "when": local_time(row["created_at"], who.timezone),
                "amount_cents": int(row["amount_cents"]),
                "merchant": row["merchant"],
            }
        )
    return shown


@router.get("/agents/{agent_id}")
def agent_page_route(agent_id: str, request: Request, who: SignedInDep) -> HTMLResponse:
    return agent_page(who, agents.parse_id(agent_id), notice=notice_of(request))


@router.post("/agents/{agent_id}/policy")
def save_policy(agent_id: str, request: Request, who: SignedInDep, form: FormDep) -> Response:
    target = agents.parse_id(agent_id)
    policy, errors = policy_from_form(form)
    if policy is None:
        return agent_page(who, target, status_code=422, editor=PolicyForm(form, errors))
    with db.connection() as conn:
        policy_admin.replace_policy(
            conn,
            organization_id=who.organization_id,
            agent_id=target,
            policy=policy,
            actor="admin",
            request_id=request_id_of(request),
        )
    return see_other(f"/dashboard/agents/{target}", notice="policy_saved")


@router.post("/agents/{agent_id}/draft")
def try_draft(agent_id: str, request: Request, who: SignedInDep, form: FormDep) -> Response:
    """The draft form's two buttons: replay the last 30 days against it (the default, as Enter in a field does), or
    record its verdict beside each real decision from now on."""
    target = agents.parse_id(agent_id)
    draft, errors = policy_from_form(form)
    if draft is None:
        return agent_page(who, target, status_code=422, draft=PolicyForm(form, errors))
    if form.get("action") == "record":
        with db.connection() as conn:
            policy_admin.set_shadow(
                conn,
                organization_id=who.organization_id,
                agent_id=target,
                shadow=draft,
                actor="admin",
                request_id=request_id_of(request),
            )
        return see_other(f"/dashboard/agents/{target}", notice="shadow_set")
    end = clock.now()
    with db.connection() as conn:
        policy_admin.get_policy(conn, organization_id=who.organization_id, agent_id=target)  # NotFound if not ours
        result = simulation.simulate(
            conn,
            organization_id=who.organization_id,
            agent_id=target,
            policy=draft,
            ceiling=policy_admin.get_ceiling(conn, organization_id=who.organization_id),
            start=end - timedelta(days=SIMULATED_DAYS),
            end=end,
        )
    return agent_page(who, target, draft=PolicyForm(form), result=result)


@router.post("/agents/{agent_id}/draft/stop")
def stop_draft(agent_id: str, request: Request, who: SignedInDep, form: FormDep) -> Response:
    target = agents.parse_id(agent_id)
    with db.connection() as conn:
        policy_admin.set_shadow(
            conn,
            organization_id=who.organization_id,
            agent_id=target,
            shadow=None,
            actor="admin",
            request_id=request_id_of(request),
        )
    return see_other(f"/dashboard/agents/{target}", notice="shadow_cleared")
