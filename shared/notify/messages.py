"""Telling the organization's admin: the approval request with its one-click links, the circuit-breaker alert, and the
link that verifies the admin email."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from shared.accounts import organizations
from shared.approvals import decisions as approvals
from shared.approvals import tokens
from shared.config import Settings
from shared.notify import email
from shared.platform import db

log = logging.getLogger("agentpay.notifications")


def approval_links(settings: Settings, transaction_id: uuid.UUID | str, expires_at: datetime) -> tuple[str, str]:
    """The Approve and Decline URLs, each with its own signed token."""
    secret = settings.require("approval_jwt_secret")
    approve = tokens.issue_token(transaction_id=transaction_id, action="approve", expires_at=expires_at, secret=secret)
    decline = tokens.issue_token(transaction_id=transaction_id, action="decline", expires_at=expires_at, secret=secret)
    return f"{settings.base_url}/v1/approve/{approve}", f"{settings.base_url}/v1/decline/{decline}"


def send_approval_request(settings: Settings, transaction_id: uuid.UUID) -> str | None:
    """Email the admin about a pending transaction. None when it is no longer pending (nothing to ask)."""
    with db.connection() as conn:
        row = approvals.load_for_decision(conn, transaction_id)
    if row["status"] != "pending":
        return None
    approve_url, decline_url = approval_links(settings, transaction_id, row["approval_expires_at"])
    message = email.render_approval_email(
        organization_name=row["organization_name"],
        agent_name=row["agent_name"],
        amount_cents=int(row["amount_cents"]),
        currency=row["currency"],
        merchant=row["merchant"],
        purpose=row["purpose"],
        context=row["context"] or {},
        expires_at=row["approval_expires_at"],
        timezone=row["timezone"],
        approve_url=approve_url,
        decline_url=decline_url,
        to=row["admin_email"],
    )
    return email.send_email(message, settings=settings, idempotency_key=f"approval-{transaction_id}")


def send_block_alert(settings: Settings, agent_id: uuid.UUID, blocked_at: str) -> str | None:
    """Email the admin that the circuit breaker blocked an agent. None when the agent is unknown."""
    with db.connection() as conn:
        row: dict[str, Any] | None = conn.execute(
            """
            SELECT a.name AS agent_name, a.blocked_at, a.blocked_reason, o.name AS organization_name, o.timezone,
                   o.admin_email
            FROM agents a JOIN organizations o ON o.id = a.organization_id WHERE a.id = %s
            """,
            (agent_id,),
        ).fetchone()
    if row is None:
        return None
    message = email.render_block_alert(
        organization_name=row["organization_name"],
        agent_name=row["agent_name"],
        blocked_at=row["blocked_at"] or datetime.fromisoformat(blocked_at),
        timezone=row["timezone"],
        reason=row["blocked_reason"] or "too many payment requests",
        dashboard_url=f"{settings.base_url}/dashboard/agents",
        to=row["admin_email"],
    )
    return email.send_email(message, settings=settings, idempotency_key=f"block-{agent_id}-{blocked_at}")


def send_email_verification(settings: Settings, organization_id: uuid.UUID, *, send: str) -> str | None:
    """Email the sign-up's address the link that verifies it. None when there is nothing to verify any more."""
    with db.connection() as conn:
        org = organizations.get_organization(conn, organization_id)
    if org is None or org["email_verified_at"] is not None:
        return None
    token = organizations.issue_verification_token(
        organization_id=organization_id, email=org["admin_email"], secret=settings.require("approval_jwt_secret")
    )
    message = email.render_email_verification(
        organization_name=org["name"],
        admin_email=org["admin_email"],
        verify_url=f"{settings.base_url}/v1/orgs/verify-email/{token}",
    )
    return email.send_email(message, settings=settings, idempotency_key=send)
