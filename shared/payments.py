"""Payment requests: idempotency, the circuit breaker, the budget decision, and the row with its audit entry."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared import audit, budget, db, jobs
from shared.auth import AgentIdentity, forget_agent
from shared.clock import clock
from shared.errors import (
    AgentBlocked,
    AgentDisabled,
    AgentPayError,
    AuthenticationFailed,
    BudgetUnavailable,
    DatabaseUnavailable,
    IdempotencyKeyReused,
    RateLimited,
    RequestInProgress,
    ValidationFailed,
)
from shared.transactions import TRANSACTION_COLUMNS

log = logging.getLogger("agentpay.payments")

REPLAY_WAIT_SECONDS = 2.0  # how long a duplicate waits for the first request's row before answering 409


@dataclass(frozen=True)
class PaymentRequest:
    """A validated payment request of one agent."""

    amount_cents: int
    currency: str
    merchant: str
    purpose: str
    context: dict[str, Any]
    idempotency_key: str
    callback_url: str | None

    def request_hash(self) -> str:
        """Identifies the parameters, so the same key with other parameters is told apart."""
        canonical = json.dumps(
            {
                "amount": self.amount_cents,
                "currency": self.currency,
                "merchant": self.merchant,
                "purpose": self.purpose,
                "context": self.context,
                "callback_url": self.callback_url,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class PaymentOutcome:
    """The transaction as it now stands, and whether this answer replays an earlier request."""

    transaction: dict[str, Any]
    replayed: bool
    decision: budget.Decision | None = None


# The request --------------------------------------------------------------------------------------------------
def request_payment(
    agent: AgentIdentity, request: PaymentRequest, *, request_id: str, approval_ttl_seconds: int
) -> PaymentOutcome:
    """Decide one payment request and record it; see ARCHITECTURE.md, "The request flow and its invariants"."""
    if agent.blocked_at is not None:
        raise AgentBlocked()
    now = clock.now()
    day = budget.budget_day(agent.timezone, now)
    transaction_id = uuid.uuid4()
    request_hash = request.request_hash()
    budget_engine = budget.get_engine()
    verdict = budget_engine.reserve(
        budget.ReserveRequest(
            agent_id=agent.id,
            idempotency_key=request.idempotency_key,
            transaction_id=transaction_id,
            key_hash=agent.key_hash,
            request_hash=request_hash,
            amount_cents=request.amount_cents,
            day=day,
            expire_at=budget.day_keys_expire_at(agent.timezone, day),
            request_id=request_id,
            now_ms=int(clock.time() * 1000),
        )
    )
    if isinstance(verdict, budget.Revoked):
        forget_agent(agent.key_hash)
        raise AgentDisabled() if verdict.disabled else AuthenticationFailed()
    if isinstance(verdict, budget.Blocked):
        raise AgentBlocked()
    if isinstance(verdict, budget.Tripped):
        block_agent(agent, request_id=request_id, count=verdict.count, limit=verdict.max_requests_per_minute)
        raise RateLimited(retry_after=60)
    if isinstance(verdict, budget.Replay):
        return _replay(agent, request, request_hash, request_id=request_id, wait_for=verdict.transaction_id)

    status, reason = _status_and_reason(verdict.outcome)
    expires_at = now + timedelta(seconds=approval_ttl_seconds) if status == "pending" else None
    try:
        row = _insert_with_audit(
            agent,
            request,
            transaction_id=transaction_id,
            request_hash=request_hash,
            status=status,
            reason=reason,
            day=day,
            expires_at=expires_at,
            decision=verdict,
            request_id=request_id,
        )
    except (DatabaseUnavailable, psycopg.OperationalError) as exc:
        _undo_reservation(budget_engine, agent, request, day, transaction_id, verdict)
        raise DatabaseUnavailable() from exc
    except BaseException:
        # Whatever stopped the row (a value Postgres refused, a bug): the hold and the claim go back.
        _undo_reservation(budget_engine, agent, request, day, transaction_id, verdict)
        raise
    if row is None:
        # The key was used before and Redis had forgotten (flushed, or the 30 s claim expired).
        if verdict.newly_held:
            _undo_reservation(budget_engine, agent, request, day, transaction_id, verdict)
        return _replay(agent, request, request_hash, request_id=request_id, wait_for=None)
    job = _job_for(transaction_id, status)
    if job is not None and row["job_id"] is not None:
        jobs.publish([jobs.OutboxJob(id=row["job_id"], type=job.type, payload=job.payload, dedup_id=job.dedup_id)])
    return PaymentOutcome(transaction=row, replayed=False, decision=verdict)


def _status_and_reason(outcome: str) -> tuple[str, str]:
    if outcome == budget.APPROVED:
        return "approved", "auto_approved"
    if outcome == budget.PENDING:
        return "pending", "approval_required"
    return "declined", outcome


def _audit_entries(
    agent: AgentIdentity,
    request: PaymentRequest,
    status: str,
    reason: str,
    decision: budget.Decision,
    request_id: str,
) -> list[tuple[str, dict[str, Any]]]:
    limits = decision.limits
    details: dict[str, Any] = {
        "request_id": request_id,
        "amount": request.amount_cents,
        "currency": request.currency,
        "merchant": request.merchant,
        "decision_reason": reason,
        "spent_before": decision.spent_before_cents,
        "limits": {
            "daily_limit": limits.daily_limit_cents,
            "per_transaction_limit": limits.per_tx_limit_cents,
            "approval_threshold": limits.approval_threshold_cents,
        },
    }
    if status == "approved":
        return [("payment.approved", details)]
    if status == "pending":
        return [("payment.pending_approval", details)]
    return [("budget.exceeded", details), ("payment.declined", details)]


_INSERT_SQL = f"""
WITH tx AS (
    INSERT INTO transactions (id, agent_id, organization_id, amount_cents, currency, merchant, purpose, context,
                              status, decision_reason, idempotency_key, request_hash, budget_day, callback_url,
                              approval_expires_at, created_at, updated_at)
    VALUES (%(id)s, %(agent_id)s, %(organization_id)s, %(amount)s, %(currency)s, %(merchant)s, %(purpose)s,
            %(context)s, %(status)s, %(reason)s, %(key)s, %(hash)s, %(day)s, %(callback_url)s, %(expires_at)s,
            %(now)s, %(now)s)
    ON CONFLICT (agent_id, idempotency_key) DO NOTHING
    RETURNING {TRANSACTION_COLUMNS}
), audit AS (
    INSERT INTO audit_logs (organization_id, agent_id, transaction_id, actor, action, details)
    SELECT tx.organization_id, tx.agent_id, tx.id, %(actor)s, entry.action, entry.details
    FROM tx CROSS JOIN jsonb_to_recordset(%(entries)s) AS entry(action text, details jsonb)
), outbox AS (
    INSERT INTO job_outbox (job_type, dedup_id, payload)
    SELECT job.job_type, job.dedup_id, job.payload
    FROM tx CROSS JOIN jsonb_to_recordset(%(jobs)s) AS job(job_type text, dedup_id text, payload jsonb)
    ON CONFLICT (dedup_id) DO NOTHING
    RETURNING id
)
SELECT tx.*, (SELECT id FROM outbox) AS job_id FROM tx
"""


def _insert_with_audit(
    agent: AgentIdentity,
    request: PaymentRequest,
    *,
    transaction_id: uuid.UUID,
    request_hash: str,
    status: str,
    reason: str,
    day: date,
    expires_at: Any,
    decision: budget.Decision,
    request_id: str,
) -> dict[str, Any] | None:
    """Write the transaction and its audit entries in one statement (one round trip, one database transaction)."""
    entries = [
        {"action": action, "details": details}
        for action, details in _audit_entries(agent, request, status, reason, decision, request_id)
    ]
    job = _job_for(transaction_id, status)
    job_rows = [{"job_type": job.type, "dedup_id": job.dedup_id, "payload": job.payload}] if job else []
    with db.connection() as conn:
        return conn.execute(
            _INSERT_SQL,
            {
                "id": transaction_id,
                "agent_id": agent.id,
                "organization_id": agent.organization_id,
                "amount": request.amount_cents,
                "currency": request.currency,
                "merchant": request.merchant,
                "purpose": request.purpose,
                "context": Jsonb(request.context),
                "status": status,
                "reason": reason,
                "key": request.idempotency_key,
                "hash": request_hash,
                "day": day,
                "callback_url": request.callback_url,
                "expires_at": expires_at,
                "now": clock.now(),
                "actor": f"agent:{agent.id}",
                "entries": Jsonb(entries),
                "jobs": Jsonb(job_rows),
            },
        ).fetchone()


def _job_for(transaction_id: uuid.UUID, status: str) -> jobs.Job | None:
    """Approved: charge it. Pending: ask the admin. Declined: nothing more."""
    if status == "approved":
        return jobs.charge_job(transaction_id)
    if status == "pending":
        return jobs.approval_email_job(transaction_id)
    return None


def _undo_reservation(
    budget_engine: budget.BudgetEngine,
    agent: AgentIdentity,
    request: PaymentRequest,
    day: date,
    transaction_id: uuid.UUID,
    decision: budget.Decision,
) -> None:
    """The row was not written: give back the hold this request took and drop its idempotency claim."""
    try:
        if decision.newly_held:
            budget_engine.release(
                agent_id=agent.id,
                day=day,
                idempotency_key=request.idempotency_key,
                undo_claim_of=str(transaction_id),
            )
        else:
            budget_engine.release(agent_id=agent.id, day=day, idempotency_key="", undo_claim_of=str(transaction_id))
    except BudgetUnavailable:
        # The sweep frees holds that have no transaction row; the claim expires by itself in 30 s.
        log.warning("could not undo a reservation", extra={"fields": {"transaction_id": str(transaction_id)}})


def _replay(
    agent: AgentIdentity, request: PaymentRequest, request_hash: str, *, request_id: str, wait_for: uuid.UUID | None
) -> PaymentOutcome:
    """Answer a repeated key with the transaction as it is now, or 409 when the parameters differ."""
    deadline = time.monotonic() + REPLAY_WAIT_SECONDS
    while True:
        with db.connection() as conn:
            row = conn.execute(
                f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE agent_id = %s AND idempotency_key = %s",
                (agent.id, request.idempotency_key),
            ).fetchone()
        if row is not None:
            if row["request_hash"] != request_hash:
                raise IdempotencyKeyReused()
            _record_replay(agent, row["id"], request_id)
            return PaymentOutcome(transaction=row, replayed=True)
        if wait_for is None or time.monotonic() > deadline:
            raise RequestInProgress()
        time.sleep(0.02)


def record_rejection(agent: AgentIdentity, error: AgentPayError, request_id: str) -> None:
    """An authenticated payment request that was refused before it became a transaction still leaves an entry."""
    details: dict[str, Any] = {"request_id": request_id, "code": error.code, "http_status": error.http_status}
    if isinstance(error, ValidationFailed):
        details["errors"] = error.errors
    with db.connection() as conn:
        audit.record(
            conn,
            organization_id=agent.organization_id,
            agent_id=agent.id,
            actor=f"agent:{agent.id}",
            action="payment.rejected",
            details=details,
        )


def _record_replay(agent: AgentIdentity, transaction_id: uuid.UUID, request_id: str) -> None:
    with db.connection() as conn:
        audit.record(
            conn,
            organization_id=agent.organization_id,
            agent_id=agent.id,
            transaction_id=transaction_id,
            actor=f"agent:{agent.id}",
            action="payment.replayed",
            details={"request_id": request_id},
        )


def block_agent(agent: AgentIdentity, *, request_id: str, count: int, limit: int) -> bool:
    """Record that the circuit breaker blocked the agent, once, with its audit entry. True if this call did it."""
    reason = f"{count} payment requests within 60 seconds (limit {limit})"
    blocked_at = clock.now()
    with db.transaction() as conn:
        row = conn.execute(
            "UPDATE agents SET blocked_at = %s, blocked_reason = %s WHERE id = %s AND blocked_at IS NULL RETURNING id",
            (blocked_at, reason, agent.id),
        ).fetchone()
        if row is None:
            return False
        alert = jobs.enqueue(conn, jobs.block_alert_job(agent.id, blocked_at.isoformat()))
        audit.record(
            conn,
            organization_id=agent.organization_id,
            agent_id=agent.id,
            actor="system",
            action="agent.blocked",
            details={"request_id": request_id, "requests_in_window": count, "max_requests_per_minute": limit},
        )
    forget_agent(agent.key_hash)
    jobs.publish([alert])
    return True
