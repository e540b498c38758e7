"""The simulation (backtest): an agent's past payment requests replayed, oldest first, against a draft policy with
the decision that serves requests (shared/policy/evaluate.py), and what would have changed.

Every window starts from the spend it really had: the organization's other agents, and this agent before `from`,
count as they really happened (holds taken at their request and given back when they were declined, timed out or
failed). A replayed request holds what its simulated verdict holds, and gives it back when its real one did so by
the same path (a pending payment an admin declined); a verdict that took another path keeps its hold."""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from shared.budget.engine import period
from shared.errors import ValidationFailed
from shared.platform import db
from shared.policy.evaluate import Window, decide
from shared.policy.model import Ceiling, Policy, normalize_merchant
from shared.policy.outcomes import BUDGET_DECLINES, DecisionReason, Status

MAX_CHANGES = 100
MAX_RANGE_DAYS = 366
_RELEASED = ("declined", "timed_out")
_AGENT_WINDOWS = (Window.MERCHANT_DAY, Window.DAY, Window.WEEK, Window.MONTH, Window.PAYMENTS_DAY)


@dataclass(frozen=True)
class _Payment:
    id: uuid.UUID
    agent_id: uuid.UUID
    amount_cents: int
    merchant: str
    budget_day: date
    created_at: datetime
    status: str
    decision_reason: str
    pending_first: bool  # it went to people at its request
    released_at: datetime | None  # when its hold was given back, if it was
    settled_at: datetime | None  # when it became approved or completed by people, if it did


@dataclass(frozen=True)
class _Verdict:
    status: Status
    reason: DecisionReason

    def wire(self) -> dict[str, str]:
        return {"status": self.status.value, "decision_reason": self.reason.value}


def _window_id(window: Window, payment: _Payment) -> tuple[Any, ...]:
    start = period(window, payment.budget_day)[0]
    if window is Window.MERCHANT_DAY:
        return (window, start, payment.agent_id, payment.merchant)
    if window in (Window.ORGANIZATION_DAY, Window.ORGANIZATION_MONTH):
        return (window, start)
    return (window, start, payment.agent_id)


class _Windows:
    """The counters of every window instance the replay touches, the holds to give back as time passes, and the
    merchants the agent has paid (for the new-merchant rule)."""

    def __init__(self, paid: set[str]) -> None:
        self.held: dict[tuple[Any, ...], int] = defaultdict(int)
        self.paid = paid
        self._due: list[tuple[datetime, int, str, _Payment]] = []  # a heap: (when, order, what, payment)
        self._order = itertools.count()

    def counters(self, payment: _Payment) -> dict[Window, int]:
        return {window: self.held[_window_id(window, payment)] for window in Window}

    def hold(self, payment: _Payment, *, until: datetime | None) -> None:
        self._add(payment, 1)
        if until is not None:
            heapq.heappush(self._due, (until, next(self._order), "release", payment))

    def paid_at(self, payment: _Payment, moment: datetime) -> None:
        heapq.heappush(self._due, (moment, next(self._order), "paid", payment))

    def _add(self, payment: _Payment, sign: int) -> None:
        for window in Window:
            step = 1 if window is Window.PAYMENTS_DAY else payment.amount_cents
            self.held[_window_id(window, payment)] += sign * step

    def advance_to(self, moment: datetime) -> None:
        """Apply what happened before `moment`: holds given back, merchants paid."""
        while self._due and self._due[0][0] <= moment:
            _, _, what, payment = heapq.heappop(self._due)
            if what == "release":
                self._add(payment, -1)
            else:
                self.paid.add(payment.merchant)


def _initial(payment: _Payment, reasons: dict[uuid.UUID, str]) -> _Verdict:
    """What a payment's request was answered with: approved, pending (for people), or declined by the policy."""
    reason = DecisionReason(reasons.get(payment.id, payment.decision_reason))
    if reason in BUDGET_DECLINES:
        return _Verdict(Status.DECLINED, reason)
    if payment.pending_first:
        return _Verdict(Status.PENDING, reason if reason in (
            DecisionReason.APPROVAL_REQUIRED, DecisionReason.NEW_MERCHANT_REQUIRES_APPROVAL
        ) else DecisionReason.APPROVAL_REQUIRED)  # fmt: skip
    return _Verdict(Status.APPROVED, DecisionReason.AUTO_APPROVED)


def simulate(
    conn: db.Connection,
    *,
    organization_id: uuid.UUID,
    agent_id: uuid.UUID,
    policy: Policy,
    ceiling: Ceiling,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """The simulation object of API.md for the agent's requests created in [start, end)."""
    if end <= start:
        raise ValidationFailed([{"field": "to", "message": "must be after from"}])
    if (end - start).days > MAX_RANGE_DAYS:
        raise ValidationFailed([{"field": "to", "message": f"must be at most {MAX_RANGE_DAYS} days after from"}])
    payments = _load(conn, organization_id=organization_id, start=start, end=end)
    replayed = [p for p in payments if p.agent_id == agent_id and p.created_at >= start]
    reasons = _decision_reasons(conn, [p.id for p in replayed])
    state = _Windows(_paid_merchants(conn, agent_id=agent_id, before=start))
    outcomes = {"actual": _counts(), "simulated": _counts()}
    changes: list[dict[str, Any]] = []
    changed = 0
    for payment in payments:
        state.advance_to(payment.created_at)
        actual = _initial(payment, reasons)
        if payment.agent_id != agent_id or payment.created_at < start:
            if actual.status is not Status.DECLINED:
                state.hold(payment, until=payment.released_at)
            continue
        verdict = decide(
            policy,
            ceiling,
            merchant=payment.merchant,
            amount_cents=payment.amount_cents,
            counters=state.counters(payment),
            new_merchant=payment.merchant not in state.paid,
        )
        simulated = _Verdict(verdict.status, verdict.reason)
        if simulated.status is not Status.DECLINED:
            same_path = simulated.status is actual.status
            state.hold(payment, until=payment.released_at if same_path else None)
            if simulated.status is Status.APPROVED:
                state.paid.add(payment.merchant)
            elif same_path and payment.settled_at is not None:
                state.paid_at(payment, payment.settled_at)
        outcomes["actual"][actual.status.value] += 1
        outcomes["simulated"][simulated.status.value] += 1
        if simulated != actual:
            changed += 1
            if len(changes) < MAX_CHANGES:
                changes.append(
                    {"transaction_id": str(payment.id), "actual": actual.wire(), "simulated": simulated.wire()}
                )
    return {
        "object": "simulation",
        "requests": len(replayed),
        "changed": changed,
        "actual": outcomes["actual"],
        "simulated": outcomes["simulated"],
        "changes": changes,
    }


def _counts() -> dict[str, int]:
    return {"approved": 0, "pending": 0, "declined": 0}


def _load(conn: db.Connection, *, organization_id: uuid.UUID, start: datetime, end: datetime) -> list[_Payment]:
    """Every payment of the organization that counts in a window a replayed request touches, oldest first: from the
    first day of the earliest window (the month's or the ISO week's start) before `start`, to `end`."""
    first_day = min(period(Window.MONTH, start.date())[0], period(Window.WEEK, start.date())[0])
    rows = conn.execute(
        """
        SELECT id, agent_id, amount_cents, merchant, budget_day, created_at, status, decision_reason,
               approval_expires_at IS NOT NULL AS pending_first, updated_at, completed_at
        FROM transactions
        WHERE organization_id = %s AND budget_day >= %s AND created_at < %s
        ORDER BY created_at, id
        """,
        (organization_id, first_day, end),
    ).fetchall()
    return [
        _Payment(
            id=r["id"],
            agent_id=r["agent_id"],
            amount_cents=int(r["amount_cents"]),
            merchant=normalize_merchant(r["merchant"]),
            budget_day=r["budget_day"],
            created_at=r["created_at"],
            status=r["status"],
            decision_reason=r["decision_reason"],
            pending_first=r["pending_first"],
            released_at=r["updated_at"] if r["status"] in _RELEASED else None,
            settled_at=(r["completed_at"] or r["updated_at"]) if r["status"] in ("approved", "completed") else None,
        )
        for r in rows
    ]


def _decision_reasons(conn: db.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The reason each request was answered with, from its decision's audit entry (a later decision by people
    replaces the reason on the row)."""
    if not ids:
        return {}
    rows = conn.execute(
        """
        SELECT transaction_id, details->>'decision_reason' AS reason FROM audit_logs
        WHERE transaction_id = ANY(%s)
          AND action IN ('payment.approved', 'payment.pending_approval', 'payment.declined')
        """,
        (ids,),
    ).fetchall()
    return {r["transaction_id"]: r["reason"] for r in rows if r["reason"]}


def _paid_merchants(conn: db.Connection, *, agent_id: uuid.UUID, before: datetime) -> set[str]:
    rows = conn.execute(
        "SELECT DISTINCT rtrim(lower(btrim(merchant)), '.') AS merchant FROM transactions"
        " WHERE agent_id = %s AND created_at < %s AND status IN ('approved', 'completed')",
        (agent_id, before),
    ).fetchall()
    return {r["merchant"] for r in rows}
