"""The HTML pages behind the emailed links: the confirm page a GET shows (a payment to decide, an email to verify),
and the page that answers the POST."""

from __future__ import annotations

import base64
import functools
import hashlib
from datetime import datetime
from typing import Any, Literal

from fastapi.responses import HTMLResponse
from markupsafe import Markup

from shared import rendering
from shared.http.app import PAGE_ISOLATION_HEADERS
from shared.rendering import TEMPLATES_DIR, format_local_time, format_money, one_line, summarize_context

Tone = Literal["success", "neutral", "error"]


@functools.cache
def page_css() -> str:
    """Our one stylesheet, inlined in every page (no request leaves the page, so the token in its URL goes nowhere)."""
    return (TEMPLATES_DIR / "approval" / "page.css").read_text(encoding="utf-8")


@functools.cache
def page_security_headers() -> dict[str, str]:
    """Headers the approval routes send with these pages: a strict CSP that admits only our inline style, and the
    isolation headers of every page."""
    digest = base64.b64encode(hashlib.sha256(page_css().encode("utf-8")).digest()).decode()
    policy = (
        f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        **PAGE_ISOLATION_HEADERS,
    }


def page_response(html: str, status: int = 200) -> HTMLResponse:
    """One of these pages as the answer, with their security headers."""
    return HTMLResponse(html, status_code=status, headers=page_security_headers())


def render_confirm_page(
    *,
    action: Literal["approve", "decline"],
    agent_name: str,
    amount_cents: int,
    currency: str,
    merchant: str,
    purpose: str,
    context: dict[str, Any],
    expires_at: datetime,
    timezone: str,
    post_url: str,
) -> str:
    """The page a link opens: what is being decided, and one button that POSTs the decision (GET changes nothing)."""
    if action not in ("approve", "decline"):
        raise ValueError(f"unknown action {action!r}")
    amount = format_money(amount_cents, currency)
    return (
        rendering.environment()
        .get_template("approval/confirm.html")
        .render(
            css=Markup(page_css()),
            page_title=f"{'Approve' if action == 'approve' else 'Decline'} {amount}",
            action=action,
            amount=amount,
            agent_name=one_line(agent_name),
            merchant=one_line(merchant),
            purpose=one_line(purpose),
            context_rows=summarize_context(context),
            expires=format_local_time(expires_at, timezone),
            post_url=post_url,
        )
    )


def render_verify_email_page(*, organization_name: str, admin_email: str, post_url: str) -> str:
    """The page the verification link opens: the address to confirm, and the one button that confirms it."""
    return (
        rendering.environment()
        .get_template("approval/verify_email.html")
        .render(
            css=Markup(page_css()),
            page_title="Verify your email",
            organization_name=one_line(organization_name),
            admin_email=admin_email,
            post_url=post_url,
        )
    )


def render_result_page(*, title: str, message: str, tone: Tone, details: dict[str, str] | None = None) -> str:
    """The page that answers a decision: approved, declined, already decided, expired, invalid, or an error."""
    if tone not in ("success", "neutral", "error"):
        raise ValueError(f"unknown tone {tone!r}")
    return (
        rendering.environment()
        .get_template("approval/result.html")
        .render(
            css=Markup(page_css()),
            page_title=title,
            title=title,
            message=message,
            tone=tone,
            details=details or {},
        )
    )
