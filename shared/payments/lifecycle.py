"""Transaction state changes after the decision: conditional updates, their audit entries and decision webhooks."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from shared.audit import log as audit
from shared.budget import engine as budget
from shared.errors import BudgetUnavailable
from shared.jobs import outbox as jobs
from shared.payments.transactions import TRANSACTION_COLUMNS, transaction_view
from shared.platform import db
from shared.platform.clock import clock, iso

WEBHOOK_EVENT_TYPES = {
    "approved": "transaction.approved",
    "completed": "transaction.completed",
    "declined": "transaction.declined",
    "timed_out": "transaction.timed_out",
}


@dataclass
class StatusChange:
    """A transaction that moved, and the jobs its move enqueued (to publish once the transaction commits)."""

    transaction: dict[str, Any]
    jobs: list[jobs.OutboxJob | None] = field(default_factory=list)


def change_status(
    conn: db.Connection,
    *,
    transaction_id: uuid.UUID | str,
    from_status: str,
    to_status: str,
    reason: str | None,
    actor: str,
    action: str,
    details: dict[str, Any],
    completed_charge_id: str | None = None,
    still_open_only: bool = False,
) -> StatusChange | None:
    """Move a transaction only if it is still in `from_status` (concurrency is the database's job).

    Writes the audit entry and, when the request gave a callback_url, the decision webhook in the same database
    transaction as the update. None when the transaction was not in `from_status` any more.
    """
    row = conn.execute(
        f"""
        UPDATE transactions
        SET status = %(to)s,
            decision_reason = coalesce(%(reason)s, decision_reason),
            stripe_charge_id = coalesce(%(charge)s, stripe_charge_id),
            completed_at = CASE WHEN %(to)s = 'completed' THEN %(now)s ELSE completed_at END,
            charge_attempt_at = NULL,
            updated_at = %(now)s
        WHERE id = %(id)s AND status = %(from)s
          AND (NOT %(open_only)s OR approval_expires_at > %(now)s)
        RETURNING {TRANSACTION_COLUMNS}
        """,
        {
            "to": to_status,
            "reason": reason,
            "charge": completed_charge_id,
            "now": clock.now(),
            "id": transaction_id,
            "from": from_status,
            "open_only": still_open_only,
        },
    ).fetchone()
    if row is None:
        return None
    audit.record(
        conn,
        organization_id=row["organization_id"],
        agent_id=row["agent_id"],
        transaction_id=row["id"],
        actor=actor,
        action=action,
        details={"from_status": from_status, "to_status": to_status, "amount": row["amount_cents"], **details},
    )
    change = StatusChange(transaction=row)
    if row["callback_url"] and to_status in WEBHOOK_EVENT_TYPES:
        change.jobs.append(enqueue_webhook(conn, row, WEBHOOK_EVENT_TYPES[to_status]))
    return change


def enqueue_webhook(conn: db.Connection, row: dict[str, Any], event_type: str) -> jobs.OutboxJob | None:
    """Record the decision webhook's event (once per transaction and type) and its delivery job."""
    event_id = "evt_" + secrets.token_hex(12)
    payload = {
        "id": event_id,
        "type": event_type,
        "created_at": iso(clock.now()),
        "data": transaction_view(row),
    }
    created = conn.execute(
        """
        INSERT INTO webhook_events (id, transaction_id, type, payload) VALUES (%s, %s, %s, %s)
        ON CONFLICT (transaction_id, type) DO NOTHING RETURNING id
        """,
        (event_id, row["id"], event_type, Jsonb(payload)),
    ).fetchone()
    if created is None:
        return None
    return jobs.enqueue(conn, jobs.webhook_job(event_id))


def free_hold(row: dict[str, Any]) -> None:
    """Give a terminal transaction's hold back to every window it holds. If Redis is down the sweep frees it later."""
    with contextlib.suppress(BudgetUnavailable):
        budget.get_engine().release(**_hold_of(row))


def settle_hold(row: dict[str, Any]) -> None:
    """The charge went through: the hold stays spent in its windows. If Redis is down the sweep settles it later."""
    with contextlib.suppress(BudgetUnavailable):
        budget.get_engine().settle(**_hold_of(row))


def _hold_of(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "organization_id": row["organization_id"],
        "agent_id": row["agent_id"],
        "day": row["budget_day"],
        "merchant": row["merchant"],
        "idempotency_key": row["idempotency_key"],
    }


def after_commit(change: StatusChange | None) -> None:
    """What a committed status change does outside the database: publish its jobs and free or settle its hold."""
    if change is None:
        return
    jobs.publish(change.jobs)
    row = change.transaction
    if row["status"] in ("declined", "timed_out"):
        free_hold(row)
    elif row["status"] == "completed":
        settle_hold(row)
