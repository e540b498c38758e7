"""The emails AgentPay sends (approval requests, block alerts): rendering, and delivery via Resend or the outbox."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shared import rendering
from shared.config import Settings
from shared.errors import (
    EmailDeliveryFailed,
)
from shared.platform import display_text
from shared.rendering import format_local_time, format_money, one_line, summarize_context

if TYPE_CHECKING:
    from resend.http_client_requests import RequestsClient

log = logging.getLogger("agentpay.email")

# Resend answers in well under a second; a hung connection must not eat the worker's whole Lambda timeout.
RESEND_TIMEOUT_SECONDS = 10
_RESEND_MAX_IDEMPOTENCY_KEY = 256

EmailKind = Literal["approval", "block_alert", "email_verification", "email"]


@dataclass(frozen=True)
class Email:
    """One rendered email, ready for any sender."""

    to: str
    subject: str
    text: str
    html: str
    kind: EmailKind = "email"  # only for logs; never part of what is sent


def _subject_part(value: str, limit: int) -> str:
    # A subject is one line that mail clients show without isolation: tabs, line breaks and bidi controls written out.
    return one_line(display_text.visible(value), limit)


def _check_link(url: str) -> str:
    # Links go into href attributes: escaping stops markup, not a javascript: scheme, so only web links pass.
    if not url.startswith(("https://", "http://")) or any(ch.isspace() for ch in url):
        raise ValueError(f"not a web link: {url!r}")
    return url


def render_approval_email(
    *,
    organization_name: str,
    agent_name: str,
    amount_cents: int,
    currency: str,
    merchant: str,
    purpose: str,
    context: dict[str, Any],
    expires_at: datetime,
    timezone: str,
    approve_url: str,
    decline_url: str,
    to: str,
) -> Email:
    """The email that asks the organization's admin to approve or decline a pending payment."""
    amount = format_money(amount_cents, currency)
    values = {
        "organization_name": one_line(organization_name),
        "agent_name": one_line(agent_name),
        "amount": amount,
        "merchant": one_line(merchant),
        "purpose": one_line(purpose),
        "context_rows": summarize_context(context),
        "expires": format_local_time(expires_at, timezone),
        "approve_url": _check_link(approve_url),
        "decline_url": _check_link(decline_url),
    }
    subject = f'Approve {amount} to {_subject_part(merchant, 60)}? (agent "{_subject_part(agent_name, 40)}")'
    return Email(
        to=to,
        subject=subject,
        text=rendering.environment().get_template("email/approval.txt").render(subject=subject, **values),
        html=rendering.environment().get_template("email/approval.html").render(subject=subject, **values),
        kind="approval",
    )


def render_block_alert(
    *,
    organization_name: str,
    agent_name: str,
    blocked_at: datetime,
    timezone: str,
    reason: str,
    dashboard_url: str,
    to: str,
) -> Email:
    """The email that tells the admin the circuit breaker blocked an agent, and where to unblock it."""
    values = {
        "organization_name": one_line(organization_name),
        "agent_name": one_line(agent_name),
        "blocked_at": format_local_time(blocked_at, timezone),
        "reason": one_line(reason),
        "dashboard_url": _check_link(dashboard_url),
    }
    subject = f'Agent "{_subject_part(agent_name, 40)}" was blocked by the circuit breaker'
    return Email(
        to=to,
        subject=subject,
        text=rendering.environment().get_template("email/block_alert.txt").render(subject=subject, **values),
        html=rendering.environment().get_template("email/block_alert.html").render(subject=subject, **values),
        kind="block_alert",
    )


def render_email_verification(*, organization_name: str, admin_email: str, verify_url: str) -> Email:
    """The email that asks the address given at sign-up to confirm it: the organization spends only after that."""
    values = {
        "organization_name": one_line(organization_name),
        "admin_email": admin_email,
        "verify_url": _check_link(verify_url),
    }
    subject = f"Verify your admin email for {_subject_part(organization_name, 60)} on AgentPay"
    return Email(
        to=admin_email,
        subject=subject,
        text=rendering.environment().get_template("email/verify_email.txt").render(subject=subject, **values),
        html=rendering.environment().get_template("email/verify_email.html").render(subject=subject, **values),
        kind="email_verification",
    )


# Delivery ------------------------------------------------------------------------------------------------------------
def send_email(email: Email, *, settings: Settings, idempotency_key: str) -> str:
    """Send through Resend when it is configured, else write to the local outbox; the Resend id or the file name."""
    if settings.resend_api_key:
        return _send_with_resend(email, settings=settings, idempotency_key=idempotency_key)
    return _write_to_outbox(email, outbox_dir=settings.outbox_dir, idempotency_key=idempotency_key)


@functools.cache
def _resend_http_client() -> RequestsClient:
    from resend.http_client_requests import RequestsClient

    return RequestsClient(timeout=RESEND_TIMEOUT_SECONDS)


def _send_with_resend(email: Email, *, settings: Settings, idempotency_key: str) -> str:
    # Here, not at the top: the email worker's webhook and dead-letter jobs send no email, and Resend's SDK (with the
    # requests library it loads) would cost every cold start of it about 45 ms.
    import resend
    from resend.exceptions import ResendError

    # The SDK is configured through module globals; setting them on each call keeps a test's settings authoritative.
    resend.api_key = settings.resend_api_key
    resend.default_http_client = _resend_http_client()
    params: resend.Emails.SendParams = {
        "from": settings.email_from,
        "to": [email.to],
        "subject": email.subject,
        "html": email.html,
        "text": email.text,
    }
    # Resend remembers the key for 24 h and answers a repeat with the first id: a job delivered twice sends once.
    options: resend.Emails.SendOptions = {"idempotency_key": _resend_idempotency_key(idempotency_key)}
    try:
        sent = resend.Emails.send(params, options)
    except ResendError as exc:
        status = _status(exc.code)
        # Outages and rate limits pass; a refused payload or a key reused with other content will not on a retry.
        in_flight = exc.error_type == "concurrent_idempotent_requests"
        retryable = status is None or status >= 500 or status == 429 or in_flight
        raise EmailDeliveryFailed(
            f"Resend refused the email ({exc.code} {exc.error_type}): {exc.message}", retryable=retryable, status=status
        ) from exc
    return str(sent["id"])


def _resend_idempotency_key(key: str) -> str:
    if len(key) <= _RESEND_MAX_IDEMPOTENCY_KEY:
        return key
    return "sha256-" + hashlib.sha256(key.encode()).hexdigest()


def _status(code: str | int) -> int | None:
    try:
        return int(code)
    except (TypeError, ValueError):
        return None


_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_URL_LINE = re.compile(r"^https?://\S+$", re.MULTILINE)


def outbox_file_name(idempotency_key: str) -> str:
    """The outbox file for a key: readable, filesystem-safe, distinct for keys that differ only in odd characters."""
    readable = _UNSAFE_FILE_CHARS.sub("_", idempotency_key).strip("._")[:80] or "email"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]
    return f"{readable}-{digest}.json"


def _write_to_outbox(email: Email, *, outbox_dir: Path, idempotency_key: str) -> str:
    outbox_dir.mkdir(parents=True, exist_ok=True)
    name = outbox_file_name(idempotency_key)
    path = outbox_dir / name
    body = json.dumps(
        {"to": email.to, "subject": email.subject, "text": email.text, "html": email.html},
        ensure_ascii=False,
        indent=2,
    )
    # Write then rename: a reader never sees half a file, and a duplicate job overwrites the same one.
    handle, temporary = tempfile.mkstemp(dir=outbox_dir, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(body)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    message = {"approval": "approval email written", "block_alert": "block alert email written"}.get(
        email.kind, "email written"
    )
    fields = {"path": str(path), "to": email.to, "subject": email.subject, "links": _URL_LINE.findall(email.text)}
    log.info(message, extra={"fields": fields})
    return name
