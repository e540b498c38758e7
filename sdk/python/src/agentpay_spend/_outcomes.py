"""A transaction's statuses and decision reasons as openapi.json spells them, as types and as values."""

from __future__ import annotations

from typing import Literal, TypedDict, get_args

TransactionStatus = Literal["pending", "approved", "declined", "completed", "timed_out"]

# The reasons the agent's policy declines a payment with, in the order the server checks them; each is also
# the 402's `error.code` (type "budget"), so BudgetExceededError.code is one of these.
BudgetDeclineReason = Literal[
    "merchant_blocked",
    "merchant_not_allowed",
    "per_transaction_limit_exceeded",
    "merchant_daily_limit_exceeded",
    "daily_limit_exceeded",
    "weekly_limit_exceeded",
    "monthly_limit_exceeded",
    "organization_daily_limit_exceeded",
    "organization_monthly_limit_exceeded",
    "payment_count_exceeded",
]

# The reasons a payment within every limit waits for people (status pending).
ApprovalReason = Literal["approval_required", "new_merchant_requires_approval"]

DecisionReason = Literal[
    "auto_approved",
    "approval_required",
    "new_merchant_requires_approval",
    "approved_by_admin",
    "merchant_blocked",
    "merchant_not_allowed",
    "per_transaction_limit_exceeded",
    "merchant_daily_limit_exceeded",
    "daily_limit_exceeded",
    "weekly_limit_exceeded",
    "monthly_limit_exceeded",
    "organization_daily_limit_exceeded",
    "organization_monthly_limit_exceeded",
    "payment_count_exceeded",
    "declined_by_admin",
    "charge_failed",
    "approval_timed_out",
]

TRANSACTION_STATUSES: tuple[TransactionStatus, ...] = get_args(TransactionStatus)
DECISION_REASONS: tuple[DecisionReason, ...] = get_args(DecisionReason)
BUDGET_DECLINE_REASONS: tuple[BudgetDeclineReason, ...] = get_args(BudgetDeclineReason)
APPROVAL_REASONS: tuple[ApprovalReason, ...] = get_args(ApprovalReason)

# The declines of the policy's merchant rules (its `merchants` part), and of the organization's ceiling.
MERCHANT_RULE_REASONS = frozenset(
    {"merchant_blocked", "merchant_not_allowed", "merchant_daily_limit_exceeded"}
)
ORGANIZATION_LIMIT_REASONS = frozenset(
    {"organization_daily_limit_exceeded", "organization_monthly_limit_exceeded"}
)


class ShadowVerdict(TypedDict):
    """What the agent's draft (shadow) policy would have decided; only the dashboard API shows it."""

    status: TransactionStatus
    decision_reason: DecisionReason
