"""The expiry sweep: times out stale approvals, re-drives stuck charges and jobs, frees holds nothing owns, and
deletes old dashboard sessions."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shared.accounts import sessions
from shared.budget import engine as budget
from shared.config import Settings
from shared.errors import AgentPayError
from shared.jobs import outbox as jobs
from shared.payments import lifecycle
from shared.platform import db
from shared.platform.clock import clock

log = logging.getLogger("agentpay.sweep")

ORPHAN_HOLD_SECONDS = 120  # a hold with no transaction row older than this belongs to a request that died
BATCH = 500
MAX_BATCHES = 20  # one sweep handles at most this many batches of each kind; the next sweep goes on


@dataclass
class SweepReport:
    """What one sweep did, in numbers."""

    timed_out: int = 0
    charges_redriven: int = 0
    jobs_republished: int = 0
    holds_freed: int = 0
    holds_settled: int = 0
    sessions_deleted: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "timed_out": self.timed_out,
            "charges_redriven": self.charges_redriven,
            "jobs_republished": self.jobs_republished,
            "holds_freed": self.holds_freed,
            "holds_settled": self.holds_settled,
            "sessions_deleted": self.sessions_deleted,
            "errors": self.errors,
        }


def run_sweep(settings: Settings) -> SweepReport:
    """One pass; each part runs even if another failed (a Redis outage must not stop the expiry of approvals)."""
    report = SweepReport()
    for part in (_expire_approvals, _redrive_charges, _republish_jobs, _reconcile_holds, _delete_old_sessions):
        try:
            part(settings, report)
        except (AgentPayError, OSError) as exc:
            report.errors.append(f"{part.__name__}: {type(exc).__name__}: {exc}")
            log.warning("sweep part failed", extra={"fields": {"part": part.__name__, "error": str(exc)}})
    return report


def _expire_approvals(settings: Settings, report: SweepReport) -> None:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT id FROM transactions WHERE status = 'pending' AND approval_expires_at <= %s"
            " ORDER BY approval_expires_at LIMIT %s",
            (clock.now(), BATCH),
        ).fetchall()
    for row in rows:
        with db.transaction() as conn:
            change = lifecycle.change_status(
                conn,
                transaction_id=row["id"],
                from_status="pending",
                to_status="timed_out",
                reason="approval_timed_out",
                actor="system",
                action="payment.timed_out",
                details={"approval_expired": True},
            )
        lifecycle.after_commit(change)
        if change is not None:
            report.timed_out += 1


def _redrive_charges(settings: Settings, report: SweepReport) -> None:
    """Approved transactions with no charge result after a few minutes get their charge job published again.

    Each one re-driven has its updated_at moved on, so the next batch (and the next sweep) skips it for a while.
    One whose charge job still waits in the outbox is behind, not lost: `_republish_jobs` handles that job, and a
    new one each pass would only lengthen the queue it waits in.
    """
    for _ in range(MAX_BATCHES):
        with db.transaction() as conn:
            rows = conn.execute(
                """
                UPDATE transactions SET updated_at = %(now)s
                WHERE id IN (
                    SELECT id FROM transactions
                    WHERE status = 'approved' AND updated_at < %(now)s - make_interval(secs => %(after)s)
                      AND (charge_attempt_at IS NULL
                           OR charge_attempt_at < %(now)s - make_interval(secs => %(lease)s))
                      AND NOT EXISTS (
                          SELECT 1 FROM job_outbox
                          WHERE published_at IS NULL AND job_type = 'charge'
                            AND payload->>'transaction_id' = transactions.id::text
                      )
                    ORDER BY updated_at LIMIT %(batch)s
                    FOR UPDATE SKIP LOCKED
                )
                RETURNING id
                """,
                {
                    "now": clock.now(),
                    "after": settings.charge_redrive_seconds,
                    "lease": settings.charge_lease_seconds,
                    "batch": BATCH,
                },
            ).fetchall()
            queued = [jobs.enqueue(conn, jobs.charge_job(r["id"], attempt=int(clock.time()))) for r in rows]
        jobs.publish(queued)
        report.charges_redriven += sum(1 for q in queued if q is not None)
        if len(rows) < BATCH:
            return


def _republish_jobs(settings: Settings, report: SweepReport) -> None:
    waiting = jobs.unpublished(older_than_seconds=settings.job_republish_seconds)
    jobs.publish(list(waiting))
    report.jobs_republished += len(waiting)


def _reconcile_holds(settings: Settings, report: SweepReport) -> None:
    """Free holds whose transaction ended or never got written; settle those whose charge completed."""
    engine = budget.get_engine()
    now_ms = int(clock.time() * 1000)
    for key in engine.store.scan_keys("ap:{*}:d:*:holds"):
        agent_id, day = _parse_holds_key(key)
        if agent_id is None or day is None:
            continue
        holds = engine.store.hgetall(key)
        if not holds:
            continue
        with db.connection() as conn:
            rows = conn.execute(
                "SELECT idempotency_key, status FROM transactions WHERE agent_id = %s AND idempotency_key = ANY(%s)",
                (agent_id, list(holds)),
            ).fetchall()
        status_of = {r["idempotency_key"]: r["status"] for r in rows}
        for field_name, value in holds.items():
            status = status_of.get(field_name)
            taken_ms = _taken_ms(value)
            if status in ("declined", "timed_out") or (
                status is None and now_ms - taken_ms > ORPHAN_HOLD_SECONDS * 1000
            ):
                if engine.release(agent_id=agent_id, day=day, idempotency_key=field_name):
                    report.holds_freed += 1
            elif status == "completed":
                engine.settle(agent_id=agent_id, day=day, idempotency_key=field_name)
                report.holds_settled += 1


def _delete_old_sessions(settings: Settings, report: SweepReport) -> None:
    """Sessions a day past their expiry are only rows: deleting them keeps the table as small as its live sessions."""
    for _ in range(MAX_BATCHES):
        with db.connection() as conn:
            deleted = sessions.delete_expired_sessions(conn, limit=BATCH)
        report.sessions_deleted += deleted
        if deleted < BATCH:
            return


def _parse_holds_key(key: str) -> tuple[uuid.UUID | None, date | None]:
    # ap:{<agent id>}:d:<YYYY-MM-DD>:holds
    try:
        agent_part = key[key.index("{") + 1 : key.index("}")]
        day_part = key.split(":d:", 1)[1].split(":", 1)[0]
        return uuid.UUID(agent_part), date.fromisoformat(day_part)
    except (ValueError, IndexError):
        return None, None


def _taken_ms(value: str) -> int:
    try:
        return int(value.split(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def run_forever(settings: Settings, stop: Any) -> None:
    """The local server's schedule: a sweep every `sweep_interval_seconds` until `stop` (an Event) is set."""
    while not stop.wait(settings.sweep_interval_seconds):
        started = time.monotonic()
        try:
            report = run_sweep(settings)
        except Exception:  # an error no part expected must not end the schedule: the next pass tries again
            log.exception("sweep failed")
            continue
        if any(v for k, v in report.as_dict().items() if k != "errors") or report.errors:
            log.info(
                "sweep",
                extra={"fields": {**report.as_dict(), "duration_ms": round((time.monotonic() - started) * 1000, 1)}},
            )
