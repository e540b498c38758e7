"""The one definition of a transaction's statuses and decision reasons; everything else is checked against it.

The database's CHECK constraints, the budget script's replies, the API schema, the error codes, the dashboard's labels
and both SDKs' types each spell these out for their own language; tests/unit/test_outcomes.py fails when any of them
drifts from this module."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a transaction is. Terminal: declined, completed, timed_out."""

    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    COMPLETED = "completed"
    TIMED_OUT = "timed_out"


TERMINAL = frozenset({Status.DECLINED, Status.COMPLETED, Status.TIMED_OUT})


class DecisionReason(StrEnum):
    """Why a transaction is in its status. The policy's declines are listed in the order they are checked."""

    AUTO_APPROVED = "auto_approved"
    APPROVAL_REQUIRED = "approval_required"
    NEW_MERCHANT_REQUIRES_APPROVAL = "new_merchant_requires_approval"
    APPROVED_BY_ADMIN = "approved_by_admin"
    MERCHANT_BLOCKED = "merchant_blocked"
    MERCHANT_NOT_ALLOWED = "merchant_not_allowed"
    PER_TRANSACTION_LIMIT_EXCEEDED = "per_transaction_limit_exceeded"
    MERCHANT_DAILY_LIMIT_EXCEEDED = "merchant_daily_limit_exceeded"
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded"
    WEEKLY_LIMIT_EXCEEDED = "weekly_limit_exceeded"
    MONTHLY_LIMIT_EXCEEDED = "monthly_limit_exceeded"
    ORGANIZATION_DAILY_LIMIT_EXCEEDED = "organization_daily_limit_exceeded"
    ORGANIZATION_MONTHLY_LIMIT_EXCEEDED = "organization_monthly_limit_exceeded"
    PAYMENT_COUNT_EXCEEDED = "payment_count_exceeded"
    DECLINED_BY_ADMIN = "declined_by_admin"
    CHARGE_FAILED = "charge_failed"
    APPROVAL_TIMED_OUT = "approval_timed_out"


# The reasons a policy declines a request with, in the order it checks them: the 402's error codes.
BUDGET_DECLINES = (
    DecisionReason.MERCHANT_BLOCKED,
    DecisionReason.MERCHANT_NOT_ALLOWED,
    DecisionReason.PER_TRANSACTION_LIMIT_EXCEEDED,
    DecisionReason.MERCHANT_DAILY_LIMIT_EXCEEDED,
    DecisionReason.DAILY_LIMIT_EXCEEDED,
    DecisionReason.WEEKLY_LIMIT_EXCEEDED,
    DecisionReason.MONTHLY_LIMIT_EXCEEDED,
    DecisionReason.ORGANIZATION_DAILY_LIMIT_EXCEEDED,
    DecisionReason.ORGANIZATION_MONTHLY_LIMIT_EXCEEDED,
    DecisionReason.PAYMENT_COUNT_EXCEEDED,
)
# The reasons a request waits for people with.
APPROVAL_REASONS = (DecisionReason.APPROVAL_REQUIRED, DecisionReason.NEW_MERCHANT_REQUIRES_APPROVAL)
