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

from shared.audit import log as audit
from shared.budget import engine as budget
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
from shared.http.auth import AgentIdentity, forget_agent
from shared.jobs import outbox as jobs
from shared.payments.transactions import TRANSACTION_COLUMNS
from shared.platform import db
from shared.platform.aio import run_blocking
from shared.platform.clock import clock
from shared.policy import evaluate
from shared.policy.model import limits_wire

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
async def request_payment(
    agent: AgentIdentity, request: PaymentRequest, *, request_id: str, approval_ttl_seconds: int
) -> PaymentOutcome:
    """Decide one payment request and record it; see ARCHITECTURE.md, "The request flow and its invariants".

    The common path awaits Redis and Postgres on the event loop; the rare ones (a replay, a tripped breaker, an
    undo) run their blocking calls in a worker thread.
    """
    if agent.blocked_at is not None:
        raise AgentBlocked.for_agent(agent.id)
    now = clock.now()
    day = budget.budget_day(agent.timezone, now)
    transaction_id = uuid.uuid4()
    request_hash = request.request_hash()
    budget_engine = budget.get_engine()
    verdict = await budget_engine.reserve(
        budget.ReserveRequest(
            organization_id=agent.organization_id,
            agent_id=agent.id,
            timezone=agent.timezone,
            day=day,
            merchant=request.merchant,
            amount_cents=request.amount_cents,
            idempotency_key=request.idempotency_key,
            transaction_id=transaction_id,
            key_hash=agent.key_hash,
            request_hash=request_hash,
            request_id=request_id,
            now_ms=int(clock.time() * 1000),
        )
    )
    if isinstance(verdict, budget.Revoked):
        forget_agent(agent.key_hash)
        raise AgentDisabled() if verdict.disabled else AuthenticationFailed()
    if isinstance(verdict, budget.Blocked):
        raise AgentBlocked.for_agent(agent.id)
    if isinstance(verdict, budget.Tripped):
        await run_blocking(
            block_agent, agent, request_id=request_id, count=verdict.count, limit=verdict.max_requests_per_minute
        )
        raise RateLimited.breaker_tripped(agent_id=agent.id, limit=verdict.max_requests_per_minute)
    if isinstance(verdict, budget.Replay):
        return await run_blocking(
            _replay, agent, request, request_hash, request_id=request_id, wait_for=verdict.transaction_id
        )

    status, reason = verdict.status.value, verdict.reason.value
    expires_at = now + timedelta(seconds=approval_ttl_seconds) if status == "pending" else None
    transaction = {
        "id": transaction_id,
        "organization_id": agent.organization_id,
        "agent_id": agent.id,
        "amount_cents": request.amount_cents,
        "currency": request.currency,
        "merchant": request.merchant,
        "purpose": request.purpose,
        "context": request.context,
        "status": status,
        "decision_reason": reason,
        "idempotency_key": request.idempotency_key,
        "request_hash": request_hash,
        "budget_day": day,
        "callback_url": request.callback_url,
        "stripe_charge_id": None,
        "approval_expires_at": expires_at,
        "created_at": clock.now(),
        "completed_at": None,
        "shadow": _shadow_verdict(verdict, request.merchant, request.amount_cents),
    }
    job = _job_for(transaction_id, status)
    try:
        written, job_id = await _record(agent, transaction, job, decision=verdict, request_id=request_id)
    except (DatabaseUnavailable, psycopg.OperationalError) as exc:
        await run_blocking(_undo_reservation, budget_engine, agent, request, day, transaction_id, verdict)
        raise DatabaseUnavailable() from exc
    except Exception:
        # Whatever stopped the row (a value Postgres refused, a bug): the hold and the claim go back. A cancelled
        # request (BaseException) keeps them: its row may have been committed, and a hold without a row is freed
        # by the sweep, whereas a row without its hold could let the day overspend.
        await run_blocking(_undo_reservation, budget_engine, agent, request, day, transaction_id, verdict)
        raise
    if not written:
        # The key was used before and Redis had forgotten (flushed, or the 30 s claim expired).
        if verdict.newly_held:
            await run_blocking(_undo_reservation, budget_engine, agent, request, day, transaction_id, verdict)
        return await run_blocking(_replay, agent, request, request_hash, request_id=request_id, wait_for=None)
    if job is not None and job_id is not None:
        outbox_job = jobs.OutboxJob(id=job_id, type=job.type, payload=job.payload, dedup_id=job.dedup_id)
        if jobs.get_transport() is not None:
            await run_blocking(jobs.publish, [outbox_job])  # QStash is an HTTPS call; the local queue is quick
    return PaymentOutcome(transaction=transaction, replayed=False, decision=verdict)


def _shadow_verdict(decision: budget.Decision, merchant: str, amount_cents: int) -> dict[str, str] | None:
    """What the draft policy would have decided with the same windows as they stood, recorded without effect."""
    effective = decision.effective
    if effective.shadow is None:
        return None
    verdict = evaluate.decide(
        effective.shadow,
        effective.ceiling,
        merchant=merchant,
        amount_cents=amount_cents,
        counters=decision.counters,
        new_merchant=decision.new_merchant,
    )
    return {"status": verdict.status.value, "decision_reason": verdict.reason.value}


def _audit_entries(
    transaction: dict[str, Any], decision: budget.Decision, request_id: str
) -> list[tuple[str, dict[str, Any]]]:
    status = transaction["status"]
    details: dict[str, Any] = {
        "request_id": request_id,
        "amount": transaction["amount_cents"],
        "currency": transaction["currency"],
        "merchant": transaction["merchant"],
        "decision_reason": transaction["decision_reason"],
        "spent_before": decision.spent_before_cents,
        # What each window held before the request, and the policy it was decided with (its version in Postgres).
        "windows": {window.value: cents for window, cents in decision.counters.items()},
        "limits": limits_wire(decision.effective.policy.limits),
        "policy_version": decision.effective.version,
    }
    if decision.exceeded is not None:
        details["window"] = decision.exceeded.window.value
    if transaction.get("shadow") is not None:
        details["shadow"] = transaction["shadow"]
    if status == "approved":
        return [("payment.approved", details)]
    if status == "pending":
        return [("payment.pending_approval", details)]
    return [("budget.exceeded", details), ("payment.declined", details)]


_RECORD_SQL = """
SELECT job_id FROM record_payment_request(
    %(id)s, %(agent_id)s, %(organization_id)s, %(amount_cents)s, %(currency)s, %(merchant)s, %(purpose)s,
    %(context)s, %(status)s, %(decision_reason)s, %(idempotency_key)s, %(request_hash)s, %(budget_day)s,
    %(callback_url)s, %(approval_expires_at)s, %(created_at)s, %(actor)s, %(audit_entries)s, %(jobs)s, %(shadow)s
)
"""


async def _record(
    agent: AgentIdentity,
    transaction: dict[str, Any],
    job: jobs.Job | None,
    *,
    decision: budget.Decision,
    request_id: str,
) -> tuple[bool, uuid.UUID | None]:
    """Write the transaction, its audit entries and its job (migrations/0006): whether it was written (False: the
    key was already used) and the job's outbox id."""
    entries = [
        {"action": action, "details": details} for action, details in _audit_entries(transaction, decision, request_id)
    ]
    job_rows = [{"job_type": job.type, "dedup_id": job.dedup_id, "payload": job.payload}] if job else []
    async with db.async_connection() as conn:
        cursor = await conn.execute(
            _RECORD_SQL,
            {
                **transaction,
                "context": Jsonb(transaction["context"]),
                "shadow": None if transaction["shadow"] is None else Jsonb(transaction["shadow"]),
                "actor": f"agent:{agent.id}",
                "audit_entries": Jsonb(entries),
                "jobs": Jsonb(job_rows),
            },
        )
        row = await cursor.fetchone()
    return (False, None) if row is None else (True, row["job_id"])


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
        budget_engine.release(
            organization_id=agent.organization_id,
            agent_id=agent.id,
            day=day,
            merchant=request.merchant,
            idempotency_key=request.idempotency_key,
            undo_claim_of=str(transaction_id),
            free_hold=decision.newly_held,
        )
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
