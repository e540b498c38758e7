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
    """Why a transaction is in its status."""

    AUTO_APPROVED = "auto_approved"
    APPROVAL_REQUIRED = "approval_required"
    APPROVED_BY_ADMIN = "approved_by_admin"
    PER_TRANSACTION_LIMIT_EXCEEDED = "per_transaction_limit_exceeded"
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded"
    DECLINED_BY_ADMIN = "declined_by_admin"
    CHARGE_FAILED = "charge_failed"
    APPROVAL_TIMED_OUT = "approval_timed_out"


# The reasons a budget rule declines a request with: the budget script's replies, the 402's error codes.
BUDGET_DECLINES = frozenset({DecisionReason.PER_TRANSACTION_LIMIT_EXCEEDED, DecisionReason.DAILY_LIMIT_EXCEEDED})
