"""The web dashboard at /dashboard: server-rendered pages over the same shared functions as the dashboard API."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import stripe
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import EmailStr, TypeAdapter, ValidationError

from shared import rendering
from shared.accounts import agents, billing, dashboard, organizations, sessions
from shared.approvals import decisions as approvals
from shared.config import Settings, get_settings
from shared.errors import (
    AgentPayError,
    AuthenticationFailed,
    AuthenticationThrottled,
    NotFound,
    SignupThrottled,
    ValidationFailed,
)
from shared.http import auth, throttle
from shared.http.app import PAGE_ISOLATION_HEADERS, request_id_of
from shared.http.deps import SettingsDep, client_address
from shared.jobs import outbox as jobs
from shared.platform import db
from shared.rendering import local_time
from shared.vendors import stripe as stripe_api

SESSION_COOKIE = "agentpay_session"
FORM_COOKIE = "agentpay_form"  # binds the CSRF token of the forms shown before login (sign-up, login)
COOKIE_PATH = "/dashboard"
STATIC_FILES = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

# Pages only load what we serve; inline style attributes carry the spend bars' widths, nothing else is inline.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    **PAGE_ISOLATION_HEADERS,
}

COMMON_TIMEZONES = (
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
)

DECISION_REASONS = {
    "auto_approved": "Approved automatically (within limits)",
    "approval_required": "Waiting for an admin's decision",
    "approved_by_admin": "Approved by an admin",
    "per_transaction_limit_exceeded": "Over the per-transaction limit",
    "daily_limit_exceeded": "Over the daily limit",
    "declined_by_admin": "Declined by an admin",
    "charge_failed": "The card charge failed",
    "approval_timed_out": "Nobody decided before the approval expired",
}
STATUS_LABELS = {
    "pending": "Pending",
    "approved": "Approved",
    "completed": "Completed",
    "declined": "Declined",
    "timed_out": "Timed out",
}
NOTICES = {
    "agent_disabled": "The agent is disabled: its next request will be refused.",
    "agent_enabled": "The agent is enabled again.",
    "agent_unblocked": "The agent is unblocked.",
    "limits_updated": "Limits saved. They apply from the agent's next request.",
    "logged_out": "You are logged out.",
    "verification_sent": "The verification link is on its way to your admin email.",
    "approved": "The payment is approved; the charge is on its way.",
    "declined": "The payment is declined and its hold released.",
}


# Errors that end a page early, turned into pages by PageRoute --------------------------------------------------------
class LoginRequired(Exception):
    """No valid session: the page sends the browser to the login page."""


class CsrfRejected(Exception):
    """A form came without the token of this session."""


def _origin_of(url: str) -> str | None:
    """scheme://host[:port] as a browser writes an Origin header (lower case, no default port); None if not a URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default_port else "")


def check_origin(request: Request) -> None:
    """A state-changing request must come from a page of ours: CsrfRejected otherwise.

    Browsers send Origin with every POST; it must be the origin the request arrived at or the public base URL's (a
    proxy or CDN in front may show the function another host). `Origin: null` (a sandboxed frame, a redirect through
    another site) is refused. Without Origin, `Sec-Fetch-Site: cross-site` still says a browser sent it from
    elsewhere. Without either it is not a browser's form, and the CSRF token alone decides.
    """
    sent = request.headers.get("origin")
    if sent is None:
        if request.headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
            raise CsrfRejected()
        return
    allowed = {_origin_of(str(request.base_url)), _origin_of(get_settings().base_url)} - {None}
    if _origin_of(sent) not in allowed:
        raise CsrfRejected()


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class PageRoute(APIRoute):
    """Answers the dashboard's failures as pages (a redirect to login, a readable 403/404) instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                # Here rather than in the form dependencies, so no POST route of the dashboard can do without it.
                if request.method not in SAFE_METHODS:
                    check_origin(request)
                response = await handle(request)
            except LoginRequired:
                return RedirectResponse("/dashboard/login", status_code=303)
            except CsrfRejected:
                return error_page(
                    403,
                    "This form has expired",
                    "The form was not sent from an open AgentPay page, or your session changed. Nothing was changed. "
                    "Go back, reload the page and try again.",
                )
            except NotFound:
                return error_page(404, "Not found", "There is nothing here, or it belongs to another organization.")
            except (ValidationFailed, RequestValidationError) as exc:
                errors = exc.errors if isinstance(exc, ValidationFailed) else [{"message": str(exc)}]
                detail = "; ".join(f"{e.get('field', 'request')}: {e['message']}" for e in errors)
                return error_page(422, "That request is not valid", detail)
            except AgentPayError as exc:
                return error_page(exc.http_status, "Something went wrong", exc.message)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return page_handler


router = APIRouter(prefix="/dashboard", route_class=PageRoute, include_in_schema=False)


# Templates and formatting ------------------------------------------------------------------------------------------
def dollars_input(cents: int) -> str:
    whole, part = divmod(int(cents), 100)
    return f"{whole}.{part:02d}"


def static_url(name: str) -> str:
    return f"/dashboard/static/{name}?v={_static_version(name)}"


@cache
def _static_version(name: str) -> str:
    return hashlib.sha256((rendering.STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("signed_in", None)
    context.setdefault("notice", None)
    context.setdefault("active", "")
    html = rendering.render(
        f"dashboard/{name}",
        reasons=DECISION_REASONS,
        status_labels=STATUS_LABELS,
        statuses=dashboard.STATUSES,
        static_url=static_url,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def error_page(status_code: int, title: str, message: str) -> HTMLResponse:
    response = render("error.html", status_code, title=title, message=message)
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        raise NotFound("No such file.")
    body = (rendering.STATIC_DIR / name).read_bytes()
    return Response(
        body,
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


# Sessions and CSRF -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedIn:
    """The admin behind a valid session cookie, their organization, and the CSRF token for their forms."""

    organization_id: uuid.UUID
    organization: dict[str, Any]
    session_id: uuid.UUID
    csrf: str

    @property
    def timezone(self) -> str:
        return str(self.organization["timezone"])


def _secret(settings: Settings) -> str:
    return settings.require("session_secret")


def signed_in(request: Request) -> SignedIn:
    secret = _secret(get_settings())
    with db.connection() as conn:
        session = sessions.load_session(conn, request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired()
    return SignedIn(
        organization_id=session.organization_id,
        organization=session.organization,
        session_id=session.session_id,
        csrf=sessions.session_csrf_token(secret, session.session_id),
    )


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


async def checked_form(request: Request, who: SignedInDep) -> dict[str, str]:
    """The posted form of a signed-in admin, if it carries their session's CSRF token."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if not hmac.compare_digest(who.csrf.encode(), form.get("csrf_token", "").encode()):
        raise CsrfRejected()
    return form


async def checked_anonymous_form(request: Request) -> dict[str, str]:
    """Sign-up and login forms: the token is bound to a random SameSite=Strict cookie set with the form."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if not sessions.csrf_valid(_secret(get_settings()), request.cookies.get(FORM_COOKIE), form.get("csrf_token")):
        raise CsrfRejected()
    return form


FormDep = Annotated[dict[str, str], Depends(checked_form)]
AnonymousFormDep = Annotated[dict[str, str], Depends(checked_anonymous_form)]


def _set_cookie(response: Response, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=not get_settings().is_local,
    )


def anonymous_page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page with a form shown before login; gives the browser the cookie its CSRF token is bound to."""
    binding = request.cookies.get(FORM_COOKIE) or secrets.token_hex(16)
    response = render(name, status_code, csrf=sessions.csrf_token(_secret(get_settings()), binding), **context)
    if request.cookies.get(FORM_COOKIE) != binding:
        _set_cookie(response, FORM_COOKIE, binding, max_age=None)
    return response


def see_other(path: str, **query: str) -> RedirectResponse:
    return RedirectResponse(_with_query(path, query), status_code=303)


def _with_query(path: str, query: dict[str, str]) -> str:
    present = {k: v for k, v in query.items() if v}
    return path + ("?" + urlencode(present) if present else "")


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


# Sign-up, login, logout --------------------------------------------------------------------------------------------
_EMAIL = TypeAdapter(EmailStr)


@router.get("/signup")
def signup_page(request: Request) -> HTMLResponse:
    return anonymous_page(request, "signup.html", **_signup_context(get_settings(), {}, {}))


def _signup_context(settings: Settings, values: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    return {
        "values": values,
        "errors": errors,
        "timezones": COMMON_TIMEZONES,
        "needs_token": not settings.is_local,
    }


@router.post("/signup")
def signup(request: Request, form: AnonymousFormDep, settings: SettingsDep) -> HTMLResponse:
    values = {k: form.get(k, "").strip() for k in ("name", "admin_email", "timezone", "timezone_other")}
    timezone = values["timezone_other"] or values["timezone"] or "UTC"
    errors: dict[str, str] = {}
    if not 1 <= len(values["name"]) <= 200:
        errors["name"] = "Enter your organization's name (up to 200 characters)."
    try:
        _EMAIL.validate_python(values["admin_email"])
    except ValidationError:
        errors["admin_email"] = "Enter a valid email address, like finance@example.com."
    try:
        organizations.validate_timezone(timezone)
    except ValidationFailed as exc:
        errors["timezone"] = exc.errors[0]["message"]
    if not settings.is_local and not _signup_token_ok(form.get("signup_token"), settings.signup_token):
        errors["signup_token"] = "This sign-up token is not valid."
    try:
        throttle.check_signup(address=client_address(request), settings=settings)
    except SignupThrottled as refused:
        context = _signup_context(settings, values, errors)
        response = anonymous_page(request, "signup.html", 429, error=refused.message, **context)
        response.headers.update(refused.headers)
        return response
    if errors:
        return anonymous_page(request, "signup.html", 422, **_signup_context(settings, values, errors))
    created = organizations.sign_up(
        stripe_api.get_client(),
        name=values["name"],
        admin_email=values["admin_email"],
        timezone=timezone,
        key_mode=settings.key_mode,
        attach_test_card=settings.is_local,
        email_verified=settings.is_local,
    )
    # Shown once, in this response only; it is never stored in clear, in a cookie or in a URL.
    return render("signup_done.html", organization=created.organization, admin_key=created.admin_key.plaintext)


def _signup_token_ok(sent: str | None, expected: str | None) -> bool:
    return bool(sent and expected and hmac.compare_digest(sent.encode(), expected.encode()))


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return anonymous_page(request, "login.html", error=None, notice=_notice(request))


@router.post("/login")
def login(request: Request, form: AnonymousFormDep) -> Response:
    key = form.get("admin_key", "").strip()
    try:
        admin = auth.authenticate_admin(f"Bearer {key}")
        with db.connection() as conn:
            session = sessions.open_session(
                conn, organization_id=admin.organization_id, admin_key_hash=auth.hash_key(key)
            )
    except AuthenticationFailed as failure:
        refusal = throttle.refusal_after(
            failure, address=client_address(request), key=key, limits=throttle.Limits.of(get_settings())
        )
        if isinstance(refusal, AuthenticationThrottled):
            retry_after = refusal.headers["Retry-After"]
            message = f"Too many failed logins from this address. Try again in {retry_after} seconds."
            response = anonymous_page(request, "login.html", 429, error=message, notice=None)
            response.headers["Retry-After"] = retry_after
            return response
        message = "That admin key is not valid. Paste the whole key, starting with apa_."
        if key.startswith("apk_"):
            message = "That is an agent key. Log in with your organization's admin key (it starts with apa_)."
        return anonymous_page(request, "login.html", 401, error=message, notice=None)
    response = see_other("/dashboard")
    _set_cookie(response, SESSION_COOKIE, session.token, max_age=sessions.SESSION_MAX_AGE_SECONDS)
    return response


@router.post("/logout")
def logout(who: SignedInDep, form: FormDep) -> Response:
    # Ended in the database first: a copy of the cookie (another tab, a stolen one) is refused from now on.
    with db.connection() as conn:
        sessions.revoke_session(conn, session_id=who.session_id)
    response = see_other("/dashboard/login", notice="logged_out")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


@router.post("/verify-email/resend")
def resend_email_verification(who: SignedInDep, form: FormDep) -> Response:
    """Queue the verification email again (one per minute at most: the job's name is the minute)."""
    if who.organization.get("email_verified_at") is None:
        minute = str(int(time.time()) // 60)
        with db.connection() as conn:
            job = jobs.enqueue(conn, jobs.email_verification_job(who.organization_id, resend=minute))
        jobs.publish([job])
    return see_other("/dashboard", notice="verification_sent")


# Transactions ------------------------------------------------------------------------------------------------------
def _agent_names(conn: db.Connection, organization_id: uuid.UUID) -> dict[str, str]:
    return {str(a["id"]): a["name"] for a in agents.list_agents(conn, organization_id=organization_id)}


def _cursor(request: Request) -> dashboard.Cursor:
    return dashboard.Cursor(
        starting_after=dashboard.parse_uuid(request.query_params.get("starting_after"), "starting_after"),
        ending_before=dashboard.parse_uuid(request.query_params.get("ending_before"), "ending_before"),
    )


def _pager(request: Request, page: dashboard.Page, cursor: dashboard.Cursor, keep: dict[str, str]) -> dict[str, Any]:
    """Next/Previous links: next pages start after this page's last row, previous ones end before its first."""
    going_back = cursor.ending_before is not None
    has_next = bool(page.rows) and (page.has_more or going_back)
    has_previous = bool(page.rows) and (cursor.starting_after is not None or (going_back and page.has_more))
    base = {k: v for k, v in keep.items() if v}
    return {
        "next": "?" + urlencode({**base, "starting_after": page.next_cursor}) if has_next else None,
        "previous": "?" + urlencode({**base, "ending_before": page.first_id}) if has_previous else None,
    }


@router.get("")
def transactions_page(request: Request, who: SignedInDep) -> HTMLResponse:
    query = request.query_params
    keep = {k: query.get(k, "") for k in ("agent_id", "status", "created_from", "created_to")}
    errors: dict[str, str] = {}
    filters = dashboard.TransactionFilters()
    try:
        filters = dashboard.TransactionFilters(
            agent_id=dashboard.parse_uuid(keep["agent_id"], "agent_id"),
            status=dashboard.parse_status(keep["status"]),
            created_from=dashboard.parse_time_bound(
                keep["created_from"], "created_from", timezone=who.timezone, end_of_day=False
            ),
            created_to=dashboard.parse_time_bound(
                keep["created_to"], "created_to", timezone=who.timezone, end_of_day=True
            ),
        )
    except ValidationFailed as exc:
        errors = {e["field"]: e["message"] for e in exc.errors}
    cursor = _cursor(request)
    with db.connection() as conn:
        names = _agent_names(conn, who.organization_id)
        if filters.agent_id is not None and str(filters.agent_id) not in names:
            raise NotFound()
        page = dashboard.list_transactions(
            conn, organization_id=who.organization_id, filters=filters, cursor=cursor, limit=25
        )
    rows = [
        {**row, "agent_name": names.get(str(row["agent_id"]), "?"), "when": local_time(row["created_at"], who.timezone)}
        for row in page.rows
    ]
    return render(
        "transactions.html",
        signed_in=who,
        active="transactions",
        rows=rows,
        agents=names,
        filters=keep,
        errors=errors,
        pager=_pager(request, page, cursor, keep),
        notice=_notice(request),
    )


@router.get("/transactions/{transaction_id}")
def transaction_page(transaction_id: str, request: Request, who: SignedInDep) -> HTMLResponse:
    from shared.payments import transactions

    tx_id = transactions.parse_id(transaction_id)
    with db.connection() as conn:
        row = dashboard.get_transaction(conn, organization_id=who.organization_id, transaction_id=tx_id)
        trail = dashboard.audit_trail(conn, organization_id=who.organization_id, transaction_id=tx_id)
        names = _agent_names(conn, who.organization_id)
    tx = transactions.transaction_view(row)
    return render(
        "transaction.html",
        signed_in=who,
        active="transactions",
        tx=tx,
        agent_name=names.get(tx["agent_id"], "?"),
        when=local_time(row["created_at"], who.timezone),
        expires=local_time(row["approval_expires_at"], who.timezone),
        completed=local_time(row["completed_at"], who.timezone),
        trail=[{**dashboard.audit_log_view(r), "when": local_time(r["created_at"], who.timezone)} for r in trail],
        notice=_notice(request),
    )


@router.post("/transactions/{transaction_id}/{action}")
def decide_transaction(transaction_id: str, action: str, request: Request, who: SignedInDep, form: FormDep) -> Response:
    """Approve or decline a pending payment from the dashboard, by the same rules as the email links."""
    from shared.payments import transactions

    if action not in ("approve", "decline"):
        raise NotFound("No such action.")
    tx_id = transactions.parse_id(transaction_id)
    approvals.decide(
        transaction_id=tx_id,
        action="approve" if action == "approve" else "decline",
        actor="admin",
        via="dashboard",
        request_id=request_id_of(request),
        reason=form.get("reason") or None,
        organization_id=who.organization_id,
    )
    notice = "approved" if action == "approve" else "declined"
    back = form.get("back", "")
    if back != "list":
        return see_other(f"/dashboard/transactions/{tx_id}", notice=notice)
    return see_other("/dashboard", notice=notice)


# Agents ------------------------------------------------------------------------------------------------------------
def _cents(value: str, field: str) -> int:
    """Dollars typed by an admin ("50", "1,250.50") as cents."""
    try:
        amount = Decimal(value.replace(",", "").replace("$", "").strip())
    except InvalidOperation as exc:
        raise ValidationFailed([{"field": field, "message": "must be an amount in dollars, like 50.00"}]) from exc
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        raise ValidationFailed([{"field": field, "message": "must be an amount in dollars with at most 2 decimals"}])
    return int(amount * 100)


def _limits_from(form: dict[str, str]) -> tuple[agents.Limits | None, dict[str, str]]:
    """The limits of a form, checked by the same rules as the API; the API's messages per field otherwise."""
    errors: dict[str, str] = {}
    cents: dict[str, int] = {}
    for field in ("daily_limit", "per_transaction_limit", "approval_threshold"):
        try:
            cents[field] = _cents(form.get(field, ""), field)
        except ValidationFailed as exc:
            errors[field] = exc.errors[0]["message"]
    rate_text = form.get("max_requests_per_minute", "").strip() or str(agents.DEFAULT_MAX_REQUESTS_PER_MINUTE)
    rate = int(rate_text) if rate_text.isdigit() else 0
    if errors:
        return None, errors
    try:
        limits = agents.Limits(
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
    return _agents_page(who, notice=_notice(request))


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


# Audit log ---------------------------------------------------------------------------------------------------------
def _audit_filters(request: Request) -> tuple[dashboard.AuditFilters, dict[str, str]]:
    keep = {k: request.query_params.get(k, "") for k in ("agent_id", "action")}
    filters = dashboard.AuditFilters(
        agent_id=dashboard.parse_uuid(keep["agent_id"], "agent_id"), action=keep["action"][:100] or None
    )
    return filters, keep


@router.get("/audit")
def audit_page(request: Request, who: SignedInDep) -> HTMLResponse:
    filters, keep = _audit_filters(request)
    cursor = _cursor(request)
    with db.connection() as conn:
        names = _agent_names(conn, who.organization_id)
        actions = dashboard.audit_actions(conn, organization_id=who.organization_id)
        page = dashboard.list_audit_logs(
            conn, organization_id=who.organization_id, filters=filters, cursor=cursor, limit=50
        )
    rows = [
        {
            **dashboard.audit_log_view(r),
            "when": local_time(r["created_at"], who.timezone),
            "agent_name": names.get(str(r["agent_id"]), "") if r["agent_id"] else "",
        }
        for r in page.rows
    ]
    return render(
        "audit.html",
        signed_in=who,
        active="audit",
        rows=rows,
        agents=names,
        actions=actions,
        filters=keep,
        pager=_pager(request, page, cursor, keep),
        csv_url="/dashboard/audit-log.csv"
        + ("?" + urlencode({k: v for k, v in keep.items() if v}) if any(keep.values()) else ""),
    )


@router.get("/audit-log.csv")
def audit_csv(request: Request, who: SignedInDep) -> StreamingResponse:
    filters, _ = _audit_filters(request)
    return StreamingResponse(
        dashboard.audit_log_csv(organization_id=who.organization_id, filters=filters),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
    )


# Billing -----------------------------------------------------------------------------------------------------------
# Checkout's page is on checkout.stripe.com: the set-up form's redirect there must be allowed by form-action.
BILLING_CSP = SECURITY_HEADERS["Content-Security-Policy"].replace(
    "form-action 'self'", "form-action 'self' https://checkout.stripe.com"
)
BILLING_NOTICES = {
    "card_saved": "The card is saved. Approved payments are charged to it from now on.",
    "test_card_saved": "The test card is attached. Approved payments are charged to it from now on.",
    "setup_cancelled": "The card set-up was cancelled. Nothing was changed.",
}


def stripe_client() -> stripe.StripeClient:
    return stripe_api.get_client()


async def card_setup_by_checkout() -> bool:
    """Outside local mode cards are entered on Stripe Checkout; localstripe has no Checkout, so locally test cards."""
    return not get_settings().is_local


StripeDep = Annotated[stripe.StripeClient, Depends(stripe_client)]
CheckoutDep = Annotated[bool, Depends(card_setup_by_checkout)]


def _customer_of(who: SignedIn) -> str:
    customer_id = who.organization.get("stripe_customer_id")
    if not customer_id:
        raise NotFound("This organization has no Stripe customer yet, so no card can be saved.")
    return str(customer_id)


@router.get("/billing")
def billing_page(request: Request, who: SignedInDep, client: StripeDep, checkout: CheckoutDep) -> HTMLResponse:
    card: billing.SavedCard | None = None
    problem = None
    method_id = who.organization.get("stripe_payment_method_id")
    if method_id:
        try:
            card = billing.saved_card(client, method_id)
        except AgentPayError:
            problem = "Card details cannot be shown right now: Stripe did not answer. Try again in a minute."
    notice = BILLING_NOTICES.get(request.query_params.get("notice", ""))
    response = render(
        "billing.html",
        signed_in=who,
        active="billing",
        card=card,
        has_card=bool(method_id),
        problem=problem,
        checkout=checkout,
        test_cards=billing.TEST_CARDS,
        notice=notice,
    )
    response.headers["Content-Security-Policy"] = BILLING_CSP
    return response


@router.post("/billing/setup")
def start_card_setup(who: SignedInDep, form: FormDep, client: StripeDep, checkout: CheckoutDep) -> Response:
    """Send the admin to Stripe Checkout (setup mode) to enter a card for the organization's customer."""
    if not checkout:
        raise NotFound("Locally, choose a test card on the Billing page instead (localstripe has no Checkout).")
    url = billing.start_card_setup(client, customer_id=_customer_of(who), base_url=get_settings().base_url)
    return RedirectResponse(url, status_code=303)


@router.get("/billing/complete")
def complete_card_setup(request: Request, client: StripeDep, checkout: CheckoutDep) -> Response:
    """Stripe sends the admin back here with the session id once the card is entered."""
    session_id = request.query_params.get("session_id", "")
    if not checkout or not session_id.startswith("cs_"):
        raise NotFound("No card set-up to complete here.")
    try:
        who = signed_in(request)
    except LoginRequired:
        # Arriving from checkout.stripe.com is a cross-site navigation, so the browser withholds the SameSite=Strict
        # session cookie. Navigating once more from our own page makes it same-site; only once, then log in.
        if request.query_params.get("resumed"):
            raise
        again = _with_query("/dashboard/billing/complete", {"session_id": session_id, "resumed": "1"})
        response = render("billing.html", resume_url=again)
        response.headers["Refresh"] = f"0; url={again}"
        return response
    billing.complete_card_setup(
        client,
        organization_id=who.organization_id,
        customer_id=_customer_of(who),
        session_id=session_id,
        request_id=request_id_of(request),
    )
    return see_other("/dashboard/billing", notice="card_saved")


@router.post("/billing/test-card")
def use_test_card(
    request: Request, who: SignedInDep, form: FormDep, client: StripeDep, checkout: CheckoutDep
) -> Response:
    """Local mode: attach another test card, e.g. one whose charges are declined, to try that path from the UI."""
    if checkout:
        raise NotFound("Test cards exist only in local mode.")
    billing.attach_test_card(
        client,
        organization_id=who.organization_id,
        customer_id=_customer_of(who),
        test_card=form.get("test_card", ""),
        request_id=request_id_of(request),
    )
    return see_other("/dashboard/billing", notice="test_card_saved")
