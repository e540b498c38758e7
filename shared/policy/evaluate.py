"""The decision a policy makes on one payment request, written once: the checks that need no counter (merchant rules,
the per-transaction limit), the windows a request is held against in API.md's order, and the approval rules.

The budget script (shared/budget/reserve_budget.lua) runs the window part atomically in Redis from the list
`windows()` gives it; `decide()` runs the same checks in Python over given counters, for the shadow policy and the
simulation. tests/integration/test_policy_differential.py proves the two agree on thousands of generated cases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.policy.model import Ceiling, Policy, matches_any
from shared.policy.outcomes import DecisionReason, Status


class Window(StrEnum):
    """A span of spend a request is counted in; each has its counter in Redis and its sum in Postgres."""

    MERCHANT_DAY = "merchant_day"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    ORGANIZATION_DAY = "organization_day"
    ORGANIZATION_MONTH = "organization_month"
    PAYMENTS_DAY = "payments_day"  # counts payments, not cents


# The order of the checks (API.md, "Policies"), each with the reason it declines with.
WINDOW_REASONS: dict[Window, DecisionReason] = {
    Window.MERCHANT_DAY: DecisionReason.MERCHANT_DAILY_LIMIT_EXCEEDED,
    Window.DAY: DecisionReason.DAILY_LIMIT_EXCEEDED,
    Window.WEEK: DecisionReason.WEEKLY_LIMIT_EXCEEDED,
    Window.MONTH: DecisionReason.MONTHLY_LIMIT_EXCEEDED,
    Window.ORGANIZATION_DAY: DecisionReason.ORGANIZATION_DAILY_LIMIT_EXCEEDED,
    Window.ORGANIZATION_MONTH: DecisionReason.ORGANIZATION_MONTHLY_LIMIT_EXCEEDED,
    Window.PAYMENTS_DAY: DecisionReason.PAYMENT_COUNT_EXCEEDED,
}


# The checks that need no counter, in their order: they come before every window.
PRECHECK_REASONS = (
    DecisionReason.MERCHANT_BLOCKED,
    DecisionReason.MERCHANT_NOT_ALLOWED,
    DecisionReason.PER_TRANSACTION_LIMIT_EXCEEDED,
)


@dataclass(frozen=True)
class Check:
    """One window a request is held against: its limit (None: counted, not limited) and what the request adds."""

    window: Window
    limit: int | None
    increment: int

    @property
    def reason(self) -> DecisionReason:
        return WINDOW_REASONS[self.window]


@dataclass(frozen=True)
class Verdict:
    """What a policy decides. For a decline by a window: which one, its limit, and what it held before the request."""

    status: Status
    reason: DecisionReason
    window: Window | None = None
    limit: int | None = None
    spent: int | None = None


def precheck(policy: Policy, *, merchant: str, amount_cents: int) -> DecisionReason | None:
    """The checks that need no counter, in API.md's order: a block wins over an allow."""
    rules = policy.merchants
    if matches_any(rules.block, merchant):
        return DecisionReason.MERCHANT_BLOCKED
    if rules.allow and not matches_any(rules.allow, merchant):
        return DecisionReason.MERCHANT_NOT_ALLOWED
    per_tx = policy.limits.per_tx_limit_cents
    if per_tx is not None and amount_cents > per_tx:
        return DecisionReason.PER_TRANSACTION_LIMIT_EXCEEDED
    return None


def windows(policy: Policy, ceiling: Ceiling, *, merchant: str, amount_cents: int) -> list[Check]:
    """Every window the request is counted in, in the order they are checked. All are counted whether limited or not,
    so a limit set in the middle of a window starts from the window's true spend."""
    limits = policy.limits
    return [
        Check(Window.MERCHANT_DAY, policy.merchants.cap_for(merchant), amount_cents),
        Check(Window.DAY, limits.daily_limit_cents, amount_cents),
        Check(Window.WEEK, limits.weekly_limit_cents, amount_cents),
        Check(Window.MONTH, limits.monthly_limit_cents, amount_cents),
        Check(Window.ORGANIZATION_DAY, ceiling.daily_limit_cents, amount_cents),
        Check(Window.ORGANIZATION_MONTH, ceiling.monthly_limit_cents, amount_cents),
        Check(Window.PAYMENTS_DAY, limits.max_payments_per_day, 1),
    ]


def first_exceeded(checks: list[Check], counters: Mapping[Window, int]) -> Check | None:
    """The first window the request would take past its limit (what the budget script does in Redis)."""
    for check in checks:
        if check.limit is not None and counters.get(check.window, 0) + check.increment > check.limit:
            return check
    return None


def approval(policy: Policy, *, amount_cents: int, new_merchant: bool) -> tuple[Status, DecisionReason]:
    """A request within every limit: approved, or pending for people (by amount first, then a new merchant)."""
    threshold = policy.limits.approval_threshold_cents
    if threshold is not None and amount_cents > threshold:
        return Status.PENDING, DecisionReason.APPROVAL_REQUIRED
    if policy.approval.new_merchant and new_merchant:
        return Status.PENDING, DecisionReason.NEW_MERCHANT_REQUIRES_APPROVAL
    return Status.APPROVED, DecisionReason.AUTO_APPROVED


def decide(
    policy: Policy,
    ceiling: Ceiling,
    *,
    merchant: str,
    amount_cents: int,
    counters: Mapping[Window, int],
    new_merchant: bool,
) -> Verdict:
    """The whole decision over given counters (what each window held before the request)."""
    refused = precheck(policy, merchant=merchant, amount_cents=amount_cents)
    if refused is not None:
        limit = policy.limits.per_tx_limit_cents if refused is DecisionReason.PER_TRANSACTION_LIMIT_EXCEEDED else None
        return Verdict(Status.DECLINED, refused, limit=limit)
    exceeded = first_exceeded(windows(policy, ceiling, merchant=merchant, amount_cents=amount_cents), counters)
    if exceeded is not None:
        return Verdict(
            Status.DECLINED,
            exceeded.reason,
            window=exceeded.window,
            limit=exceeded.limit,
            spent=counters.get(exceeded.window, 0),
        )
    status, reason = approval(policy, amount_cents=amount_cents, new_merchant=new_merchant)
    return Verdict(status, reason)
