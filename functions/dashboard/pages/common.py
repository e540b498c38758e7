"""What every dashboard page shares: PageRoute and its error pages, rendering, labels, sessions, CSRF and cookies."""

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from shared import rendering
from shared.accounts import agents, dashboard, sessions
from shared.config import Settings, get_settings
from shared.errors import AgentPayError, CsrfRejected, LoginRequired, NotFound, ValidationFailed
from shared.http.app import PAGE_ISOLATION_HEADERS
from shared.platform import db
from shared.policy.model import MAX_LIMIT_CENTS

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

DECISION_REASONS = {
    "auto_approved": "Approved automatically (within limits)",
    "approval_required": "Waiting for an admin's decision",
    "new_merchant_requires_approval": "Waiting for an admin: a merchant this agent never paid",
    "approved_by_admin": "Approved by an admin",
    "merchant_blocked": "The merchant is blocked",
    "merchant_not_allowed": "The merchant is not on the allowed list",
    "per_transaction_limit_exceeded": "Over the per-transaction limit",
    "merchant_daily_limit_exceeded": "Over the merchant's daily limit",
    "daily_limit_exceeded": "Over the daily limit",
    "weekly_limit_exceeded": "Over the weekly limit",
    "monthly_limit_exceeded": "Over the monthly limit",
    "organization_daily_limit_exceeded": "Over the organization's daily limit",
    "organization_monthly_limit_exceeded": "Over the organization's monthly limit",
    "payment_count_exceeded": "Over the number of payments a day",
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
    "policy_saved": "Policy saved. It applies from the agent's next request.",
    "shadow_set": "The draft is recording: each new request notes what it would have decided. Nothing else changes.",
    "shadow_cleared": "The draft stopped recording. Decisions already made keep their notes.",
    "ceiling_saved": "The organization's limits are saved. They apply from every agent's next request.",
    "logged_out": "You are logged out.",
    "verification_sent": "The verification link is on its way to your admin email.",
    "approved": "The payment is approved; the charge is on its way.",
    "declined": "The payment is declined and its hold released.",
}


# Errors that end a page early, turned into pages by PageRoute --------------------------------------------------------
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


# Every group's router is a PageRoute router; pages/__init__.py puts them all under /dashboard. This one serves the
# static files.
def page_router() -> APIRouter:
    """A page group's router: its paths under /dashboard, answered by PageRoute, and left out of the API's OpenAPI.

    Each group is handed to create_app as it is (pages.ROUTERS): a router included into another router is rebuilt
    route by route at every level, which cost the dashboard's cold start about 8 ms."""
    return APIRouter(prefix="/dashboard", route_class=PageRoute, include_in_schema=False)


router = page_router()


# Templates and formatting ------------------------------------------------------------------------------------------
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


# Dollars in forms ---------------------------------------------------------------------------------------------------
def dollars_input(cents: int | None) -> str:
    """Cents as a form shows them ("50.00"); nothing for no amount."""
    if cents is None:
        return ""
    whole, part = divmod(int(cents), 100)
    return f"{whole}.{part:02d}"


def cents_from_dollars(value: str, field: str) -> int:
    """Dollars typed by an admin ("50", "1,250.50", "$5") as cents, 0 or more (every amount in a form is a limit);
    ValidationFailed naming `field` otherwise."""
    try:
        amount = Decimal(value.replace(",", "").replace("$", "").strip())
    except InvalidOperation as exc:
        raise ValidationFailed([{"field": field, "message": "must be an amount in dollars, like 50.00"}]) from exc
    if not amount.is_finite():
        raise ValidationFailed([{"field": field, "message": "must be an amount in dollars, like 50.00"}])
    if amount < 0:
        raise ValidationFailed([{"field": field, "message": "must be 0 or more"}])
    # Checked before rounding: quantize() itself fails on a number as large as 1e400.
    if amount * 100 > MAX_LIMIT_CENTS:
        largest = rendering.format_money(MAX_LIMIT_CENTS)
        raise ValidationFailed([{"field": field, "message": f"must be at most {largest}"}])
    if amount != amount.quantize(Decimal("0.01")):
        raise ValidationFailed([{"field": field, "message": "must be an amount in dollars with at most 2 decimals"}])
    return int(amount * 100)


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


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None) -> None:
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
        set_cookie(response, FORM_COOKIE, binding, max_age=None)
    return response


def see_other(path: str, **query: str) -> RedirectResponse:
    return RedirectResponse(with_query(path, query), status_code=303)


def with_query(path: str, query: dict[str, str]) -> str:
    present = {k: v for k, v in query.items() if v}
    return path + ("?" + urlencode(present) if present else "")


def notice_of(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


# Lists: the transactions and the audit log page alike --------------------------------------------------------------
def agent_names(conn: db.Connection, organization_id: uuid.UUID) -> dict[str, str]:
    return {str(a["id"]): a["name"] for a in agents.list_agents(conn, organization_id=organization_id)}


def cursor_of(request: Request) -> dashboard.Cursor:
    return dashboard.Cursor(
        starting_after=dashboard.parse_uuid(request.query_params.get("starting_after"), "starting_after"),
        ending_before=dashboard.parse_uuid(request.query_params.get("ending_before"), "ending_before"),
    )


def pager(request: Request, page: dashboard.Page, cursor: dashboard.Cursor, keep: dict[str, str]) -> dict[str, Any]:
    """Next/Previous links: next pages start after this page's last row, previous ones end before its first."""
    going_back = cursor.ending_before is not None
    has_next = bool(page.rows) and (page.has_more or going_back)
    has_previous = bool(page.rows) and (cursor.starting_after is not None or (going_back and page.has_more))
    base = {k: v for k, v in keep.items() if v}
    return {
        "next": "?" + urlencode({**base, "starting_after": page.next_cursor}) if has_next else None,
        "previous": "?" + urlencode({**base, "ending_before": page.first_id}) if has_previous else None,
    }
