"""Transactions: reading them for their agent or organization, and the transaction object of API.md."""

from __future__ import annotations

import uuid
from typing import Any

from shared.errors import NotFound
from shared.platform import db
from shared.platform.clock import iso

TRANSACTION_COLUMNS = """
id, organization_id, agent_id, amount_cents, currency, merchant, purpose, context, status, decision_reason,
idempotency_key, request_hash, budget_day, callback_url, stripe_charge_id, approval_expires_at, created_at,
completed_at, shadow
"""


def parse_id(value: str) -> uuid.UUID:
    """A UUID from a path segment; anything malformed is simply not found."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError) as exc:
        raise NotFound("No such transaction.") from exc


def get_for_agent(conn: db.Connection, *, agent_id: uuid.UUID, transaction_id: uuid.UUID) -> dict[str, Any]:
    """The agent's own transaction; another agent's is NotFound, exactly like a missing one."""
    row = conn.execute(
        f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = %s AND agent_id = %s",
        (transaction_id, agent_id),
    ).fetchone()
    if row is None:
        raise NotFound("No such transaction.")
    return row


def transaction_view(row: dict[str, Any]) -> dict[str, Any]:
    """The transaction object of API.md."""
    return {
        "id": str(row["id"]),
        "object": "transaction",
        "organization_id": str(row["organization_id"]),
        "agent_id": str(row["agent_id"]),
        "amount": int(row["amount_cents"]),
        "currency": row["currency"],
        "merchant": row["merchant"],
        "purpose": row["purpose"],
        "context": row["context"] if row["context"] is not None else {},
        "status": row["status"],
        "decision_reason": row["decision_reason"],
        "idempotency_key": row["idempotency_key"],
        "stripe_charge_id": row["stripe_charge_id"],
        "approval_expires_at": iso(row["approval_expires_at"]),
        "created_at": iso(row["created_at"]),
        "completed_at": iso(row["completed_at"]),
    }


def dashboard_view(row: dict[str, Any]) -> dict[str, Any]:
    """The transaction object as the organization's admins see it: with the draft policy's verdict (agents never
    see their organization's drafts)."""
    return {**transaction_view(row), "shadow": row.get("shadow")}
