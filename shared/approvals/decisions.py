"""Human approval: deciding a pending transaction, once (the links' signed tokens are in tokens.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from shared.errors import (
    AlreadyDecided,
    LinkExpired,
    NotFound,
)
from shared.jobs import outbox as jobs
from shared.payments import lifecycle
from shared.payments.transactions import TRANSACTION_COLUMNS
from shared.platform import db

Action = Literal["approve", "decline"]


@dataclass(frozen=True)
class DecisionResult:
    """The transaction after a decision, and whether this call made the decision or found it already made."""

    transaction: dict[str, Any]
    changed: bool


def load_for_decision(conn: db.Connection, transaction_id: uuid.UUID) -> dict[str, Any]:
    """The transaction with what the pages show about it (agent, organization)."""
    row = conn.execute(
        f"""
        SELECT {", ".join("t." + c.strip() for c in TRANSACTION_COLUMNS.split(","))},
               a.name AS agent_name, o.name AS organization_name, o.timezone, o.admin_email
        FROM transactions t
        JOIN agents a ON a.id = t.agent_id
        JOIN organizations o ON o.id = t.organization_id
        WHERE t.id = %s
        """,
        (transaction_id,),
    ).fetchone()
    if row is None:
        raise NotFound("No such transaction.")
    return row


def decide(
    *,
    transaction_id: uuid.UUID,
    action: Action,
    actor: str,
    via: str,
    request_id: str,
    reason: str | None = None,
    organization_id: uuid.UUID | None = None,
) -> DecisionResult:
    """Approve or decline a pending transaction, once. The same decision again changes nothing (200); the opposite
    one after a decision is 409 already_decided; a transaction past its approval window is 410."""
    with db.transaction() as conn:
        if organization_id is not None:
            owner = conn.execute(
                "SELECT 1 FROM transactions WHERE id = %s AND organization_id = %s", (transaction_id, organization_id)
            ).fetchone()
            if owner is None:
                raise NotFound("No such transaction.")
        details: dict[str, Any] = {"request_id": request_id, "via": via}
        if action == "approve":
            change = lifecycle.change_status(
                conn,
                transaction_id=transaction_id,
                from_status="pending",
                to_status="approved",
                reason="approved_by_admin",
                actor=actor,
                action="payment.approved",
                details=details,
                still_open_only=True,
            )
            if change is not None:
                change.jobs.append(jobs.enqueue(conn, jobs.charge_job(transaction_id)))
        else:
            if reason:
                details["reason"] = reason[:1000]
            change = lifecycle.change_status(
                conn,
                transaction_id=transaction_id,
                from_status="pending",
                to_status="declined",
                reason="declined_by_admin",
                actor=actor,
                action="payment.declined",
                details=details,
                still_open_only=True,
            )
    if change is not None:
        lifecycle.after_commit(change)
        return DecisionResult(transaction=change.transaction, changed=True)
    with db.connection() as conn:
        current = load_for_decision(conn, transaction_id)
    if _already(action, current):
        return DecisionResult(transaction=current, changed=False)
    if current["status"] == "pending":
        raise LinkExpired("The approval window of this payment has passed.")
    raise AlreadyDecided(f"This payment was already decided: it is {current['status'].replace('_', ' ')}.")


def _already(action: Action, row: dict[str, Any]) -> bool:
    if action == "approve":
        return row["decision_reason"] == "approved_by_admin" and row["status"] in ("approved", "completed")
    return row["status"] == "declined" and row["decision_reason"] == "declined_by_admin"
